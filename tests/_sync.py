"""`NoHostSync`: a CPU stand-in for ``torch.cuda.set_sync_debug_mode("error")``, shared by the tests that check a
device path never makes the host and the device wait for each other (MinAtar's counter-stream games, the
device-resident environments and rollout collection)."""

import torch
from torch.overrides import TorchFunctionMode


class HostSync(AssertionError):
    """Raised by `NoHostSync` at the first operation that would synchronise; the message names it."""


class NoHostSync(TorchFunctionMode):
    """Refuse every tensor operation that would make a GPU wait for the host or the host for the GPU: reading a
    value into Python or numpy (``item``, ``bool``, ``int``, ``tolist``, ``numpy``, ``cpu``, ``.to("cpu")``,
    using a tensor as a list index) and data-dependent shapes (``nonzero``, boolean-mask indexing, ``unique``)."""

    READS = {"item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__", "__array__", "cpu",
             "nonzero", "argwhere", "masked_select", "unique", "unique_consecutive", "repeat_interleave"}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in self.READS:
            raise HostSync(f"host sync: {name}")
        if name == "to" and any(str(a) == "cpu" for a in (*args[1:], *kwargs.values())):
            raise HostSync("host sync: .to('cpu')")
        if name in ("__getitem__", "__setitem__"):
            index = args[1] if isinstance(args[1], tuple) else (args[1],)
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index):
                raise HostSync(f"host sync: boolean-mask {name}")
        return func(*args, **kwargs)
