"""How pysnn's discrete-time neuron maps to NIR's continuous-time nodes.

NIR's leaky integrator, τ·dv/dt = (v_leak − v) + R·I, stepped by forward
Euler with step dt, is v[t] = (1 − dt/τ)·v[t−1] + (R·dt/τ)·I[t] (for
v_leak = 0). pysnn's u[t] = λ·u[t−1] + x[t] is that with

    τ = dt / (1 − λ),   R = τ / dt,

the convention snnTorch and SpikingJelly use, with dt = 1e-4 s unless the
graph's metadata says otherwise. Reading back, λ = 1 − dt/τ and the input
scale R·dt/τ is folded into the weights of the layer feeding the neurons.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

DEFAULT_DT = 1e-4
PRODUCER = "pysnn"
# Node metadata marking a nir.LIF written by pysnn's `neuron="lif"` export:
# the reset subtracts the threshold inside the decay (not NIR's hard reset).
SOFT_RESET_KEY = "pysnn_reset"
SOFT_RESET_VALUE = "subtract-threshold-inside-decay"


class NIRError(ValueError):
    """A network or graph that NIR / pysnn cannot represent, or an unreadable file."""


def require_nir():
    try:
        import nir
    except ImportError:
        raise NIRError("NIR support needs the `nir` package: pip install nir") from None
    return nir


def to_continuous(decay: float, dt: float) -> Tuple[float, float]:
    """(τ, R) of the NIR leaky integrator stepping like pysnn's decay λ."""
    if not 0.0 <= decay < 1.0:
        raise NIRError(f"a decay of {decay} has no finite NIR time constant (needs 0 <= decay < 1)")
    tau = dt / (1.0 - decay)
    return tau, tau / dt


def to_discrete(node_name: str, tau: np.ndarray, r: np.ndarray, dt: float) -> Tuple[float, float]:
    """(λ, input scale) of a NIR leaky integrator with parameters τ, R."""
    tau_value = uniform(node_name, "tau", tau)
    r_value = uniform(node_name, "r", r)
    if not tau_value >= dt:
        raise NIRError(
            f"node '{node_name}': tau = {tau_value:g} is below dt = {dt:g}; with forward Euler "
            f"the decay 1 - dt/tau would be negative (pass the dt the graph was made with)"
        )
    return 1.0 - dt / tau_value, r_value * dt / tau_value


def uniform(node_name: str, field: str, values) -> float:
    """The one value every neuron of a node shares (pysnn's layers have scalar parameters)."""
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0 or not np.all(np.isfinite(array)):
        raise NIRError(f"node '{node_name}': {field} is empty or not finite")
    if not np.all(array == array[0]):
        raise NIRError(
            f"node '{node_name}': {field} differs between neurons "
            f"({array.min():g} to {array.max():g}); pysnn layers share one value"
        )
    return float(array[0])


def text(value) -> str:
    """Metadata strings come back from HDF5 as bytes."""
    return value.decode() if isinstance(value, bytes) else str(value)
