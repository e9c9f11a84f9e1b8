"""Detection metrics: COCO-style AP through pycocotools, per-frame top-1 scores."""
