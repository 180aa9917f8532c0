"""``bratsx bench``: each backend measured in its own process (``worker``) against the machine's peak per precision,
measured with OpenVINO's oneDNN and computed from the CPU (``peak``), with FLOPs counted from the graph (``flops``),
and against peers on the same weights (``monai_reference``, ``nnunet_reference``); ``run`` puts one report
together."""
