"""Albumentations pipelines for search crops (boxes follow) and reference templates."""

from __future__ import annotations

import albumentations as A
import cv2

def search_augmentation() -> A.Compose:
    """Geometric + photometric augmentation of an RGB uint8 search crop with one pascal_voc box.

    Mirrors seed 001's recipe (flip, slight shift-scale-rotate, colour jitter, blur, noise), kept
    mild because the objects are small: a box that loses half of itself is dropped (=> absent).
    """
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(
                scale=(0.8, 1.25),
                translate_percent=(-0.05, 0.05),
                rotate=(-20, 20),
                border_mode=cv2.BORDER_REFLECT_101,
                p=0.7,
            ),
            A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03, p=0.5),
            A.GaussianBlur(blur_limit=(3, 5), p=0.3),
            A.GaussNoise(std_range=(0.02, 0.08), p=0.15),
        ],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=0.5),
    )


def template_augmentation() -> A.Compose:
    """Light augmentation of a reference photo: the user's photos are clean, so little is needed."""
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(rotate=(-30, 30), border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.5),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
        ]
    )


def identity_augmentation(p: float, max_templates: int = 8) -> A.Compose:
    """With probability ``p``, give the object a new colour identity: one random RGB channel
    permutation and hue rotation applied alike to the search crop (``image``) and its references
    (``template0`` .. ``template{max_templates - 1}``).

    Matching must then compare the search image with *these* references instead of recalling the
    few training identities' colours, which is what an unseen object needs; relative differences
    (target vs. distractors) survive because every pixel of the crop gets the same mapping.
    """
    return A.Compose(
        [
            A.ChannelShuffle(p=0.5),
            A.HueSaturationValue(hue_shift_limit=180, sat_shift_limit=0, val_shift_limit=0, p=1.0),
        ],
        p=p,
        additional_targets={f"template{i}": "image" for i in range(max_templates)},
        is_check_shapes=False,  # the crop and the references differ in size; the mapping is per pixel
    )
