"""Peak bytes of live tensors, counted the way ``torch.cuda.max_memory_allocated`` counts.

The counter lives in :mod:`videomage.memory` (``videomage plan`` uses it on the meta device);
the benchmarks import it from here.
"""

from videomage.memory import LiveBytes, storage_bytes

__all__ = ["LiveBytes", "storage_bytes"]
