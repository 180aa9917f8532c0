"""``bratsx bench``: each backend measured in its own process (``worker``) against the machine's measured GEMM peak
(``peak``) with FLOPs counted from the graph (``flops``), and against a peer on the same weights
(``monai_reference``); ``run`` puts one report together."""
