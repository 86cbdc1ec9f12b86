"""dsa_ops: fused kernels for the DSA module of DSANet (Dynamic Segment Aggregation)."""
from .functional import dsa_aggregate, segment_pool
from .module import DSAConv
from .ops import backend_status
from .reference import DSAReference

__version__ = "0.1.0"
__all__ = ["DSAConv", "DSAReference", "backend_status", "dsa_aggregate", "segment_pool", "__version__"]
