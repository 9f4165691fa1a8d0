"""Backward growth of the gradient through the carried state (h, F) over the BPTT window at a checkpoint: per
minibatch of 4 envs, the pre-clip parameter-gradient norm; for spikes (> 20), the per-step state-gradient norms of
the env with the largest one. Run: python state_grad_profile.py CHECKPOINT ROLLOUTS (docs/stpn.md §11.2)."""
import sys, dataclasses, torch, numpy as np
from stoxbar.pong.checkpoint import load_agent
from stoxbar.pong.a2c import TrainConfig
from stoxbar.pong.ppo import PPORunner, normalized
torch.set_num_threads(1)
path = sys.argv[1]; rollouts = int(sys.argv[2]) if len(sys.argv) > 2 else 2
agent, ckpt = load_agent(path)
cfg = TrainConfig.from_dict(ckpt["train_config"])
cfg = dataclasses.replace(cfg, algo="ppo", num_envs=16, env_groups=1, group_threads=False, ppo_epochs=1)
agent.train()
rec = []
orig = agent.reset_state
def reset_state(state, done):
    state = orig(state, done)
    row = [None] * len(state)
    for i, s in enumerate(state):
        if s.requires_grad:
            def hook(g, i=i, row=row): row[i] = None if g is None else g.flatten(1).norm(dim=1).detach().clone()
            s.register_hook(hook)
    rec.append(row)
    return state
agent.reset_state = reset_state
torch.manual_seed(1)
runner = PPORunner(agent, None, cfg, env_seed=123)
for r in range(rollouts):
    buf, _, _ = runner._rollout()
    for idx in torch.arange(16).tensor_split(4):
        rec.clear(); agent.zero_grad(set_to_none=True)
        runner._minibatch_loss(buf, idx, normalized(buf["adv"][:, idx]))
        gn = torch.sqrt(sum((p.grad ** 2).sum() for p in agent.parameters() if p.grad is not None)).item()
        T = len(rec)
        F = torch.stack([row[1] if row[1] is not None else torch.zeros(4) for row in rec])  # [T, B]
        H = torch.stack([row[0] for row in rec])
        b = int(F[0].argmax()); d = buf["dones"][:, idx][:, b]
        print(f"r{r} gn={gn:9.3g} max |dh|={H.max():.2e} |dF|={F.max():.2e} (env {b}) dones at "
              f"{torch.nonzero(d).flatten().tolist()}")
        if gn > 20:
            for t in range(T - 2, -1, -1):
                if F[t, b] / F[t + 1, b] > 1.3 or t % 16 == 0: print(f"   t={t:3d} |dh|={H[t, b]:.2e} |dF|={F[t, b]:.2e} ratio={F[t, b] / F[t + 1, b]:.2f}")
runner.close()
