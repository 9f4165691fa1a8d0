"""STO tiles as full aihwkit citizens: training that reaches the conductances, save/load, programming
and drift with STO physics (docs/aihwkit-support.md).

What it is for: mixins added to the bases of :class:`~stoxbar.crossbar.tile.STOSimulatorTile`,
:class:`~stoxbar.crossbar.tile.STOTile`, :class:`~stoxbar.crossbar.array.STOTileArray` and
:class:`~stoxbar.crossbar.read.TiledAnalogMVM`, so the substrate classes stay about the substrate.

* **Training** (``STORPUConfig.update_mode``). aihwkit's torch tiles train the ``weight`` parameter
  of the simulator tile (``AnalogSGD`` or any torch optimiser). After each change of that
  parameter the device is brought to it:

  - ``"program_after_step"`` (default): the updated weights are programmed through the device's
    programming model (``periphery.programming``: write-verify lands every changed device within
    its residual error, open-loop re-fires the mean device's pulses from reset with d2d/c2c
    spread); pulses and energy are booked (``lt_program``). The parameter stays the digital
    target (a master copy), so every torch optimiser works unchanged and the device error is a
    programming error, not a biased update; with the ideal device training equals float training.
  - ``"pulsed"``: the change becomes LTP/LTD pulse counts computed from the *nominal* step
    (stochastic rounding), applied through the device's state-dependent response with per-device
    d2d factors and c2c spread (``dynamics.apply_long_term``); the parameter is then set to what
    the device actually holds (aihwkit's pulsed-update idea with our device).

  ``AnalogSGD`` does this in ``post_update_step`` (after aihwkit's clip and remap, which therefore
  act on the device); a plain torch optimiser has no post-update hook, so the next forward notices
  the changed parameter (version counter, then value) and programs first.
* **Read path**: weight modifiers (``rpu_config.modifier``) perturb the weights read in training
  forward passes; ``out_noise_values`` (``forward.out_noise_std > 0``) act per column.
* **Save/load**: picklable gradient hook for mapping scales; the short-term state rides in the
  tile's ``dump_extra``/the array's extra state; a checkpoint for another device rebuilds the
  simulator tile from the loaded configuration; stock-aihwkit configs are refused with ConfigError.
* **Programming/drift**: ``program_analog_weights()`` programs the reference weights with the STO
  model; ``drift_analog_weights(t)`` relaxes the long-term state by the retention law
  (:mod:`~stoxbar.devices.retention`) and decays the short-term state with its own time constant.

May import: torch, aihwkit, stoxbar.devices, stoxbar.validation, stoxbar.crossbar.state (never
stpn/pong/studies).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor

from aihwkit.simulator.parameters.enums import WeightModifierType

from stoxbar.devices import dynamics
from stoxbar.validation import ConfigError, check_range

UPDATE_MODES = ("program_after_step", "pulsed")


# -- helpers ---------------------------------------------------------------------------------------
def device_field(device, name: str, needed_for: str) -> float:
    """``device.<name>``, or a ConfigError naming the field a plug-in device lacks for ``needed_for``."""
    value = getattr(device, name, None)
    if value is None:
        raise ConfigError(f"device {type(device).__name__} has no field {name!r}: {needed_for} needs it "
                          "(see docs/aihwkit-support.md §3)")
    return value


def write_verify_tolerance_s(device) -> float:
    """Acceptance band (S) of write-verify: ``|g - target| <= lt_c2c_std * lt_dg_s``.

    Assumption (docs/aihwkit-support.md §3): the verify loop accepts a device once it is within one
    pulse's cycle-to-cycle spread of its target, so the residual error is uniform in the band
    (std ``tol / sqrt(3)``). Ideal device (no c2c): exact.
    """
    return device_field(device, "lt_c2c_std", "write-verify training") * device.lt_dg_s


class _ScaleGradHook:
    """Picklable replacement of aihwkit's local ``set_scales`` hook: ``grad / scales**2``."""

    def __init__(self, scales: Tensor):
        self.scales = scales

    def __call__(self, grad: Tensor) -> Tensor:
        return grad / self.scales.to(grad.device).view(-1, 1) ** 2


# -- simulator tile --------------------------------------------------------------------------------
class STOSimulatorTileCompat:
    """Mixin for :class:`STOSimulatorTile`: brings the conductances to the trained ``weight``."""

    def __init__(self, x_size: int, d_size: int, rpu_config: Any, *args: Any, **kwargs: Any):
        super().__init__(x_size, d_size, rpu_config, *args, **kwargs)
        self.update_mode = getattr(rpu_config, "update_mode", "program_after_step")
        # the target the conductances were last brought to (persistent: survives save/load)
        self.register_buffer("programmed_target", torch.zeros_like(self.weight.data))
        self._sync_key: Tuple[int, int] = (-1, -1)
        self._d2d: Optional[Tuple[Tensor, Tensor]] = None  # per-device step factors (pulsed mode)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints from before the programmed target was saved: the target is the weight
        if prefix + "programmed_target" not in state_dict and prefix + "weight" in state_dict:
            state_dict[prefix + "programmed_target"] = state_dict[prefix + "weight"]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_config(self, rpu_config: Any) -> None:  # aihwkit calls this on every forward
        super().set_config(rpu_config)
        self.update_mode = getattr(rpu_config, "update_mode", self.update_mode)

    # -- bookkeeping -----------------------------------------------------------------------
    def _key(self) -> Tuple[int, int]:
        return (self.weight.data_ptr(), self.weight._version)

    def mark_programmed(self) -> None:
        """The conductances now correspond to the current ``weight`` parameter."""
        self.programmed_target.copy_(self.weight.detach())
        self._sync_key = self._key()

    def device_stale(self) -> bool:
        """True if ``weight`` changed since the conductances were last brought to it."""
        if self._sync_key == self._key():
            return False
        if torch.equal(self.weight.detach(), self.programmed_target):
            self._sync_key = self._key()
            return False
        return True

    def _book(self, pulses: float, energy_j: float) -> None:
        if pulses > 0:  # the one cost model books it (or keeps it pending without a ledger)
            from stoxbar.crossbar.events import Events

            self.emit(self.tile_name, Events("program", self.x_size, self.d_size, self.row_tile, self.row_tiles,
                                             program_pulses=pulses, program_device_j=energy_j))

    # -- bringing the device to the weights -------------------------------------------------
    @torch.no_grad()
    def sync_device(self) -> None:
        """Program (or pulse) the conductances to ``weight`` if it changed (see module docstring)."""
        if not self.device_stale():
            return
        # NaN/inf weights (a diverged step) are refused by CrossbarState.program / the pulse model
        # the conductance window bounds the weight (like aihwkit's w_min/w_max device bounds)
        self.weight.data.clamp_(-1.0, 1.0)
        if self.update_mode == "pulsed":
            self.pulsed_update(self.weight.detach())
            self.weight.data.copy_(self.get_weights().to(self.weight.device, self.weight.dtype))
        else:
            self.program_target(self.weight.detach(), changed_only=True)
        self.mark_programmed()

    @torch.no_grad()
    def program_target(self, target: Tensor, changed_only: bool = False,
                       mode: Optional[str] = None) -> Tuple[float, float]:
        """Program ``target [d, x]`` (|w| <= 1) with the STO programming model; returns (pulses, J).

        ``write_verify``: exact landing (``CrossbarState.program``), then the device of each pair
        that carries the weight (the other is reset to ``g_min``) keeps a residual error uniform in
        the acceptance band (:func:`write_verify_tolerance_s`), drawn anew where the target changed
        (everywhere if ``changed_only`` is False). ``open_loop``: reset and the mean device's pulses, with the
        device's d2d and c2c spread (``CrossbarState.program``).
        """
        mode = mode or self.programming
        st = self.state
        dev = st.device_model
        tol = write_verify_tolerance_s(dev) if mode == "write_verify" else 0.0
        dtype = st.g_pos.dtype
        if tol > 0 and changed_only:  # compared before programming (a tile's state is one [1, d, x] block)
            same = target.to(dtype) == self.programmed_target.to(dtype)
        pulses, energy = st.program(target, mode)
        if tol > 0:
            # residual of the carrying device, added in place through 0/1 side factors (no torch.where,
            # slow on CPU, and few temporaries); the same draw in the same order as before
            new = target.to(dtype).unsqueeze(0)
            err = torch.rand_like(new).mul_(2).sub_(1).mul_(tol)
            if changed_only:
                err.masked_fill_(same.unsqueeze(0), 0.0)
            sign = torch.sign(new)
            side = sign.clamp_min(0)  # 1 where w > 0: G+ carries the weight
            st.g_pos.addcmul_(side, err).clamp_(dev.g_min_s, dev.g_max_s)
            torch.clamp_max(sign, 0, out=side)  # -1 where w < 0: G- carries it
            st.g_neg.addcmul_(side, err, value=-1.0).clamp_(dev.g_min_s, dev.g_max_s)
            st._version += 1
        self._book(pulses, energy)
        return pulses, energy

    @torch.no_grad()
    def pulsed_update(self, target: Tensor) -> Tuple[float, float]:
        """Move the device toward ``target [d, x]`` with LTP/LTD pulses; returns (pulses, J).

        Pulse counts come from the nominal step (``lt_dg_s`` for LTP, ``lt_up_down * lt_dg_s``
        for LTD) by stochastic rounding; each pair moves one device: toward positive weight, LTD
        on G- while it holds weight, else LTP on G+ (mirror for negative). The response is the
        device's own (state-dependent steps, d2d factors drawn once per device, c2c spread).
        """
        st = self.state
        dev = st.device_model
        mask = st.mask.expand_as(st.g_pos)
        dw = (st.tiled_weight(target.to(st.g_pos.dtype)) - st.weights()) * mask
        if self._d2d is not None and self._d2d[0].device != st.g_pos.device:
            self._d2d = tuple(d.to(st.g_pos.device) for d in self._d2d)
        if self._d2d is None or self._d2d[0].shape != st.g_pos.shape:
            self._d2d = (dynamics.draw_d2d(st.g_pos.shape, dev, None, st.g_pos.dtype, st.g_pos.device),
                         dynamics.draw_d2d(st.g_pos.shape, dev, None, st.g_pos.dtype, st.g_pos.device))
        eps = 1e-6 * dev.g_range_s
        pos_holds = st.g_pos > dev.g_min_s + eps
        neg_holds = st.g_neg > dev.g_min_s + eps
        up, down = dw > 0, dw < 0
        dg = dw.abs() * dev.g_range_s
        u = torch.rand_like(dg)  # stochastic rounding (one draw; each device uses one of the two counts)
        n_ltp = torch.floor(dg / dev.lt_dg_s + u)
        n_ltd = torch.floor(dg / (dev.lt_dg_s * device_field(dev, "lt_up_down", "pulsed training")) + u)
        zero = torch.zeros_like(dg)
        n_pos = torch.where(up & ~neg_holds, n_ltp, torch.where(down & pos_holds, -n_ltd, zero)) * mask
        n_neg = torch.where(down & ~pos_holds, n_ltp, torch.where(up & neg_holds, -n_ltd, zero)) * mask
        pulses, energy = 0.0, 0.0
        for g, n, d2d in ((st.g_pos, n_pos, self._d2d[0]), (st.g_neg, n_neg, self._d2d[1])):
            sel = n != 0  # only pulsed devices move (and draw c2c noise)
            if not bool(sel.any()):
                continue
            new, e = dynamics.apply_long_term(g[sel], n[sel], dev, None, d2d[sel])
            g[sel] = new
            pulses += float(n.abs().sum())
            energy += float(e.sum())
        st._version += 1
        self._book(pulses, energy)
        return pulses, energy

    # -- read-path extras -------------------------------------------------------------------
    def read_modifier(self, is_test: bool) -> Any:
        """The weight modifier to apply in this read (None in eval or if off)."""
        mod = getattr(self, "_modifier", None)
        if is_test or mod is None or mod.type in (WeightModifierType.NONE, WeightModifierType.COPY):
            return None
        return mod

    # -- save/load (aihwkit's analog state) ----------------------------------------------------
    def dump_extra(self) -> Optional[Dict]:
        st = self.state
        return {"g_st": None if st.g_st is None else st.g_st.detach().clone(), "hold_bias": st.hold_bias,
                "d2d": self._d2d}

    def load_extra(self, extra: Dict, strict: bool = False) -> None:
        if not isinstance(extra, dict):
            return
        st = self.state
        g_st = extra.get("g_st")
        st.g_st = None if g_st is None else g_st.to(st.g_pos.device, st.g_pos.dtype).clone()
        st._st_cols = None
        st.hold_bias = bool(extra.get("hold_bias", st.hold_bias))
        self._d2d = extra.get("d2d")


# -- indexed convolutions -------------------------------------------------------------------------
def set_fold_indices(module: Any, indices: Tensor, image_sizes: Any) -> None:
    """Store aihwkit's fold indices (``0`` = zero padding, ``k >= 2`` = input element ``k - 2``)."""
    if len(image_sizes) not in (3, 5, 7):
        raise ConfigError(f"image_sizes = {list(image_sizes)!r}: expected 3, 5 or 7 sizes "
                          "[C_in, (D_in), H_in, (W_in), (D_out), H_out, (W_out)]")
    module.image_sizes = list(image_sizes)
    module._sto_fold = indices.detach().to(torch.long)


def forward_indexed(module: Any, x_input: Tensor, mvm: Any) -> Tensor:
    """A convolution as one MVM over the patches the fold indices gather (autograd end to end).

    ``x_input [N, C, *spatial]`` -> patches ``[N * P, in]`` -> ``mvm`` -> ``[N, out, *spatial_out]``.
    """
    n = x_input.shape[0]
    flat = x_input.reshape(n, -1)
    ext = torch.cat([flat.new_zeros(n, 2), flat], 1)
    fold = module._sto_fold.to(flat.device)
    if int(fold.max()) > ext.shape[1] - 1:
        raise ConfigError(f"input of {flat.shape[1]} elements per sample: smaller than the convolution's fold "
                          "indices expect (aihwkit recomputes them when the input size changes)")
    cols = ext[:, fold].view(n, module.in_size, -1).transpose(1, 2)  # [N, patches, in]
    patches = cols.shape[1]
    out = mvm(cols.reshape(n * patches, module.in_size)).view(n, patches, module.out_size).transpose(1, 2)
    k = (len(module.image_sizes) - 1) // 2
    return out.reshape(n, module.out_size, *module.image_sizes[-k:])


# -- tile module -----------------------------------------------------------------------------------
class STOTileCompat:
    """Mixin for :class:`STOTile` (aihwkit ``TorchInferenceTile``): see the module docstring."""

    _sto_pending_error: Optional[str] = None
    _sto_written: bool = False

    # -- weights ----------------------------------------------------------------------------
    def set_weights(self, weight: Tensor, bias: Optional[Tensor] = None, **kwargs: Any) -> None:
        """aihwkit's ``set_weights``; a first write of non-finite values to a fresh tile is deferred.

        aihwkit's mapped layers write uninitialised memory once in ``__init__`` before their real
        initialisation. Such a write (non-finite values, tile never written) programs nothing and
        leaves a pending :class:`ConfigError` that the next valid write clears and any use of the
        tile (forward, programming) raises. Every later write is checked strictly.
        """
        finite = bool(torch.isfinite(weight).all()) and (bias is None or bool(torch.isfinite(bias).all()))
        if not finite and not self._sto_written:
            self._sto_pending_error = ("weight contains NaN or inf (first write to this tile): inputs to an "
                                       "STO tile must be finite")
            return None
        self._sto_written = True
        self._sto_pending_error = None
        return super().set_weights(weight, bias, **kwargs)

    def check_written(self) -> None:
        """Raise the pending error of a deferred non-finite first write (see :meth:`set_weights`)."""
        if self._sto_pending_error is not None:
            raise ConfigError(self._sto_pending_error)

    # -- indexed convolutions (aihwkit's AnalogConv1d/3d and the mapped convolutions) ------------
    supports_indexed: bool = True

    def set_indexed(self, indices: Tensor, image_sizes: Any) -> None:
        set_fold_indices(self, indices, image_sizes)

    def is_indexed(self) -> bool:
        return getattr(self, "_sto_fold", None) is not None

    def forward(self, x_input: Tensor, tensor_view: Optional[Tuple] = None) -> Tensor:
        self.check_written()
        if x_input.ndim >= 3 and self.is_indexed():
            return forward_indexed(self, x_input, lambda cols: super(STOTileCompat, self).forward(cols))
        return super().forward(x_input, tensor_view)

    def set_scales(self, scales: Tensor) -> None:
        """aihwkit's ``set_scales`` with a picklable gradient hook (``torch.save(model)`` works)."""
        from aihwkit.simulator.tiles.inference_torch import TorchInferenceTile

        super(TorchInferenceTile, self).set_scales(scales)  # the periphery's, without the local hook
        if self._backward_hook_handle is not None:
            self._backward_hook_handle.remove()
            self._backward_hook_handle = None
        if self.tile.weight.requires_grad:
            self._backward_hook_handle = self.tile.register_weight_hook(_ScaleGradHook(scales))

    # -- training ---------------------------------------------------------------------------
    @torch.no_grad()
    def post_update_step(self) -> None:
        """aihwkit's clip and remap (on the weights), then the device is brought to them."""
        super().post_update_step()
        self.check_written()
        self.tile.sync_device()

    # -- programming and drift ----------------------------------------------------------------
    @torch.no_grad()
    def program_weights(self, from_reference: bool = True, noise_model: Any = None) -> None:
        """Program the reference weights with the STO programming model (``periphery.programming``).

        Stores the programmed long-term and short-term state as the t = 0 point of
        :meth:`drift_weights` and initialises aihwkit's drift compensation baseline.
        """
        if noise_model is not None:
            raise ConfigError("noise_model: STO tiles program and drift through the device model "
                              "(periphery.programming, STORPUConfig.retention); aihwkit noise models do not apply")
        self.check_written()
        t = self.tile
        if not from_reference or self.reference_combined_weights is None:
            self.reference_combined_weights = t.weight.detach().clone()
        ref = self.reference_combined_weights.to(t.weight.device, t.weight.dtype)
        t.weight.data.copy_(ref)
        t.program_target(ref, changed_only=False)
        t.mark_programmed()
        st = t.state
        self.programmed_weights = t.get_weights()
        ret = self.rpu_config.retention
        self._sto_programmed = (st.g_pos.clone(), st.g_neg.clone(),
                                None if st.g_st is None else st.g_st.clone(),
                                ret.draw_tau(st.g_pos.shape, st.g_pos.dtype).to(st.g_pos.device))
        if getattr(self.rpu_config, "drift_compensation", None) is not None:
            self.drift_baseline = self.rpu_config.drift_compensation.init_baseline(self)

    @torch.no_grad()
    def drift_weights(self, t_inference: float = 0.0) -> None:
        """State ``t_inference`` seconds after programming (absolute, like aihwkit's).

        Long-term: ``g(t) = g_min + (g(0) - g_min) exp(-(t/tau_ij)^beta)`` (retention law);
        short-term: ``F(t) = F(0) exp(-t / tau(V_bias))`` (the device's own decay). Then aihwkit's
        drift compensation (if configured) rescales the outputs.
        """
        check_range("t_inference", t_inference, 0.0, None, unit="s")
        if getattr(self, "_sto_programmed", None) is None:
            self.program_weights()
        t = self.tile
        st = t.state
        g_pos0, g_neg0, g_st0, tau = (None if v is None else v.to(st.g_pos.device) for v in self._sto_programmed)
        dev = st.device_model
        ret = self.rpu_config.retention
        m = st.mask.to(st.g_pos.dtype)
        st.g_pos.copy_(ret.relax(g_pos0, dev.g_min_s, t_inference, tau) * m)
        st.g_neg.copy_(ret.relax(g_neg0, dev.g_min_s, t_inference, tau) * m)
        if g_st0 is not None and st.g_st is not None and st.g_st.shape == g_st0.shape:
            st.g_st.copy_(dynamics.decay(g_st0, st.v_bias, t_inference, dev))
            st._st_cols = None
        st._version += 1
        t._sync_key = t._key()  # the weight parameter stays the programmed target
        if getattr(self.rpu_config, "drift_compensation", None) is not None:
            out = self._forward_drift_readout_tensor()
            self.__dict__.pop("alpha", None)
            self.alpha = self.rpu_config.drift_compensation.apply(out, self.drift_baseline)

    # -- save/load -------------------------------------------------------------------------
    def _recreate_simulator_tile(self, x_size: int, d_size: int, rpu_config: Any) -> Any:
        """Keep the simulator tile if it models the loaded device and periphery, else rebuild it."""
        from stoxbar.crossbar.config import STORPUConfig

        if not isinstance(rpu_config, STORPUConfig):
            raise ConfigError(f"rpu_config = {type(rpu_config).__name__}: an STO tile loads only STORPUConfig "
                              "checkpoints (stock aihwkit and STO tiles do not exchange analog states)")
        tile = self.__dict__.get("_modules", {}).get("tile")
        if tile is not None and tile.state.device_model == rpu_config.device \
                and tile.periphery == rpu_config.periphery:
            return tile
        new = rpu_config.simulator_tile_class(x_size=x_size, d_size=d_size, rpu_config=rpu_config)
        if tile is not None:
            new.attach(tile.ledger, tile.layer_name)
            new.tile_name = tile.tile_name
        return new

    def __setstate__(self, state: Dict) -> None:
        from stoxbar.crossbar.config import STORPUConfig

        cfg = state.get("rpu_config")
        if cfg is not None and not isinstance(cfg, STORPUConfig):
            raise ConfigError(f"rpu_config = {type(cfg).__name__}: an STO tile loads only STORPUConfig checkpoints "
                              "(stock aihwkit and STO tiles do not exchange analog states)")
        tile = state.get("_modules", {}).get("tile")  # pickled (torch.save(model)): restore it exactly
        saved = None
        if tile is not None and hasattr(tile, "state"):
            st = tile.state
            saved = (st.g_pos.clone(), st.g_neg.clone(), tile.weight.detach().clone(),
                     tile.programmed_target.clone())
        super().__setstate__(state)
        if saved is not None and self.tile is tile:
            st = self.tile.state
            st.g_pos.copy_(saved[0])
            st.g_neg.copy_(saved[1])
            st._version += 1
            self.tile.weight.data.copy_(saved[2])
            self.tile.programmed_target.copy_(saved[3])
            self.tile._sync_key = (-1, -1)  # re-checked against programmed_target by value


# -- tile array ------------------------------------------------------------------------------------
class STOTileArrayCompat:
    """Mixin for :class:`STOTileArray`: device sync, per-column output noise, save/load."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.register_load_state_dict_post_hook(STOTileArrayCompat._after_load)

    supports_indexed: bool = True
    analog_bias: bool = False  # STO layers keep the bias digital (aihwkit's convolutions ask)

    @property
    def is_cuda(self) -> bool:
        return self.state.g_pos.is_cuda

    def set_indexed(self, indices: Tensor, image_sizes: Any) -> None:
        set_fold_indices(self, indices, image_sizes)

    def is_indexed(self) -> bool:
        return getattr(self, "_sto_fold", None) is not None

    def indexed_forward(self, x_input: Tensor) -> Optional[Tensor]:
        """The convolution result if ``x_input`` is an image and fold indices are set, else None."""
        if x_input.ndim >= 3 and self.is_indexed():
            return forward_indexed(self, x_input, self.forward)
        return None

    _sync_seen: Optional[Tuple] = None

    def _weight_key(self) -> Tuple:
        ws = self.__dict__.get("_sync_weights")
        if ws is None:  # the tiles' weight parameters (reset when tiles are rebuilt on load)
            ws = self.__dict__["_sync_weights"] = [tile.tile.weight for *_, tile in self._tiles()]
        return tuple((w.data_ptr(), w._version) for w in ws)

    def sync_device(self) -> None:
        """Bring every tile's conductances to its trained weight (plain torch optimisers).

        One version check for the whole array on the hot path; per tile only if a weight changed.
        """
        if self._sync_seen is not None and self._weight_key() == self._sync_seen:
            return
        for *_, tile in self._tiles():
            tile.check_written()
            tile.tile.sync_device()
        self._sync_seen = self._weight_key()

    def read_modifier(self, is_test: bool) -> Any:
        return self.array[0][0].tile.read_modifier(is_test)

    def out_noise_values(self) -> Optional[Tensor]:
        """Per-column output noise ``[T, O]`` of the tiles, or None."""
        if self.__dict__.get("_no_out_noise") is None:
            self.__dict__["_no_out_noise"] = all(t.tile.out_noise_values is None for *_, t in self._tiles())
        if self.__dict__["_no_out_noise"]:
            return None
        vals = None
        for i, j, n_in, o0, n_out, tile in self._tiles():
            v = tile.tile.out_noise_values
            if v is None:
                continue
            if vals is None:
                vals = v.new_full((len(self.in_sizes), self.out_size), float(tile.rpu_config.forward.out_noise))
            vals[i, o0:o0 + n_out] = v
        return vals

    def get_extra_state(self) -> Any:
        st = self.state
        return {"g_st": None if st.g_st is None else st.g_st.detach().clone(), "hold_bias": st.hold_bias}

    def set_extra_state(self, extra: Any) -> None:
        self._loaded_extra = extra

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints from before the short-term state was saved: nothing to restore
        state_dict.setdefault(prefix + "_extra_state", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @staticmethod
    def _after_load(module: "STOTileArrayCompat", incompatible: Any) -> None:
        """After loading: rebuild the shared state for the loaded device if needed, rebind views."""
        from stoxbar.crossbar.state import CrossbarState

        cfg = module.array[0][0].rpu_config
        old = module.state
        if cfg.device != old.device_model or module.periphery != cfg.periphery:
            new = CrossbarState(module.in_sizes, module.out_size, cfg.device, dtype=old.g_pos.dtype,
                                out_sizes=module.out_sizes)
            for name in ("g_pos", "g_neg", "v_bias"):
                getattr(new, name).copy_(getattr(old, name))
            new.hold_bias = old.hold_bias
            module.state = new
            module.flush()
            module.device, module.periphery = cfg.device, cfg.periphery
            module.rpu_config = cfg
        extra = module.__dict__.pop("_loaded_extra", None)
        if isinstance(extra, dict):
            g_st = extra.get("g_st")
            module.state.g_st = None if g_st is None else g_st.to(module.state.g_pos.dtype).clone()
            module.state._st_cols = None
            module.state.hold_bias = bool(extra.get("hold_bias", module.state.hold_bias))
        module._bind_tiles()
        module.state._version += 1
        module.__dict__.pop("_sync_weights", None)
        module.__dict__.pop("_no_out_noise", None)
        module._sync_seen = None
