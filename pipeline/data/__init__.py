"""Data: demo generator, format readers, the canonical manifest, datasets and augmentation."""
