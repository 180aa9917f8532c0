"""bratsx: brain-tumour segmentation on multimodal MRI, from training to fast batch inference."""

__version__ = "0.1.0"
