"""Per minibatch: pre-clip gradient norm with the state-gradient clip at several NORMs, and the cosine of each
clipped gradient with the unclipped one, at one checkpoint over the same rollouts."""
import sys, dataclasses, torch
from stoxbar.pong.checkpoint import load_agent
from stoxbar.pong.a2c import TrainConfig
from stoxbar.pong.ppo import PPORunner, normalized
torch.set_num_threads(1)
path, rollouts = sys.argv[1], int(sys.argv[2])
clips = [float(c) for c in sys.argv[3].split(",")]
agent, ckpt = load_agent(path)
cfg = dataclasses.replace(TrainConfig.from_dict(ckpt["train_config"]), algo="ppo", num_envs=16, env_groups=1,
                          group_threads=False, ppo_epochs=1, state_grad_clip=0.0)
agent.train()
torch.manual_seed(1)
runner = PPORunner(agent, None, cfg, env_seed=123)
params = [p for p in agent.parameters() if p.requires_grad]
def grad(buf, idx, c):
    runner.cfg = dataclasses.replace(cfg, state_grad_clip=c)
    agent.zero_grad(set_to_none=True)
    runner._minibatch_loss(buf, idx, normalized(buf["adv"][:, idx]))
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
for r in range(rollouts):
    runner.cfg = cfg
    buf, _, _ = runner._rollout()
    for idx in torch.arange(16).tensor_split(4):
        g0 = grad(buf, idx, 0.0)
        row = [f"r{r} off {g0.norm():9.3g}"]
        for c in clips:
            g = grad(buf, idx, c)
            row.append(f"c={c:g}: {g.norm():8.3g} cos {torch.nn.functional.cosine_similarity(g, g0, dim=0):.4f}")
        print(" | ".join(row), flush=True)
runner.close()
