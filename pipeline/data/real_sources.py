"""The openly licensed real photographs the real-photo check set is composed from.

All of them are installed files, nothing is downloaded: OpenCV's sample data as Debian's
``opencv-doc`` package installs it (``/usr/share/doc/opencv-doc/examples/data``; OpenCV's licence,
Apache-2.0 AND BSD-3-Clause per ``/usr/share/doc/opencv-doc/copyright``, ``Files: *``), and the two
photos scikit-learn ships (``sklearn/datasets/images``, CC BY 2.0, see its ``README.txt``).
scikit-image's and matplotlib's sample images are deliberately not used anywhere in this project:
they are kept back for held-out evaluation.

An object has one or more *views*: a photo and, where the object is only part of it, the
quadrilateral around it. Where OpenCV ships two real photos of one object (``box.png`` and the box
in ``box_in_scene.png``, the graffiti in ``graf1.png`` / ``graf3.png`` related by ``H1to3p.xml``,
stereo and motion pairs), the last view is the one pasted into frames and the others are
references, so the detector matches across a real change of viewpoint or lighting.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
OPENCV_LICENCE = "Apache-2.0 AND BSD-3-Clause (OpenCV; /usr/share/doc/opencv-doc/copyright, Files: *)"
SKLEARN_LICENCE = "CC BY 2.0 (scikit-learn sample image; sklearn/datasets/images/README.txt)"

Quad = tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class View:
    """One photo of an object or one background.

    Attributes:
        source: ``"opencv"`` (a file of OpenCV's sample data) or ``"sklearn"`` (its sample images).
        name: the file name (``box.png``; a video is read at ``frame``).
        quad: the object's corners in the photo's pixels (clockwise), or None for the whole photo.
        frame: the frame index, for a video.
        cutout: cut the object from its plain surroundings (GrabCut inside the quad) instead of
            keeping the whole quad; for photos where that works (checked by eye).
    """

    source: str
    name: str
    quad: Quad | None = None
    frame: int = 0
    cutout: bool = False


@dataclass(frozen=True)
class RealObject:
    """A target: ``views[-1]`` is pasted into frames, the other views are reference photos."""

    name: str
    views: tuple[View, ...]


def _rect(x1: float, y1: float, x2: float, y2: float) -> Quad:
    return ((x1, y1), (x2, y1), (x2, y2), (x1, y2))


def _cv(name: str, quad: Quad | None = None) -> View:
    return View("opencv", name, quad)


OBJECTS: tuple[RealObject, ...] = (
    # Corners of the box in the scene: SIFT matches of box.png, RANSAC homography (found once).
    RealObject("box", (_cv("box.png"), _cv("box_in_scene.png", ((119, 161), (285, 175), (268, 299), (90, 273))))),
    # The graf1 square mapped into graf3 by H1to3p.xml (the viewpoint pair's ground truth).
    RealObject("graffiti", (_cv("graf1.png", _rect(300, 80, 520, 300)),
                            _cv("graf3.png", ((390, 95), (508, 151), (453, 341), (332, 298))))),
    RealObject("aloe", (_cv("aloeL.jpg", _rect(350, 80, 1000, 1080)), _cv("aloeR.jpg", _rect(250, 80, 900, 1080)))),
    RealObject("player", (_cv("basketball1.png", _rect(10, 50, 200, 470)),
                          _cv("basketball2.png", _rect(10, 50, 200, 470)))),
    RealObject("squirrel", (_cv("squirrel_cls.jpg", _rect(150, 120, 450, 426)),)),
    RealObject("apple", (View("opencv", "apple.jpg", cutout=True),)),
    RealObject("orange", (View("opencv", "orange.jpg", cutout=True),)),
    RealObject("butterfly", (View("opencv", "butterfly.jpg", cutout=True),)),
    RealObject("fish", (View("opencv", "HappyFish.jpg", cutout=True),)),
    RealObject("baboon", (_cv("baboon.jpg"),)),
    RealObject("dog", (_cv("chicky_512.png"),)),
    RealObject("flower", (View("sklearn", "flower.jpg"),)),
)

# Wide scenes, aerial first: what a drone or a surveillance camera sees.
BACKGROUNDS: tuple[View, ...] = (
    _cv("aero1.jpg"),
    _cv("aero3.jpg"),
    View("opencv", "vtest.avi", frame=0),
    View("opencv", "vtest.avi", frame=400),
    _cv("leuvenA.jpg"),
    _cv("building.jpg"),
    _cv("home.jpg"),
    View("sklearn", "china.jpg"),
)


# Photos the demo's training identities and grounds take their textures from (data.demo.photo_*):
# none of them is, or shows the scene of, a check-set object or background above, so the check set
# stays unseen. Fruit, animals and street scenes are left out for the same reason.
TRAINING_PHOTOS: tuple[View, ...] = (
    _cv("messi5.jpg"),
    _cv("board.jpg"),
    _cv("cards.png"),
    _cv("smarties.png"),
    _cv("stuff.jpg"),
    _cv("starry_night.jpg"),
    _cv("rubberwhale1.png"),
    _cv("ela_original.jpg"),
    _cv("licenseplate_motion.jpg"),
    _cv("Blender_Suzanne1.jpg"),
    View("opencv", "tree.avi", frame=20),
    View("opencv", "Megamind.avi", frame=20),
    View("opencv", "Megamind.avi", frame=200),
)


def licence(view: View) -> str:
    """The licence of ``view``'s file."""
    return OPENCV_LICENCE if view.source == "opencv" else SKLEARN_LICENCE


def _read_opencv(path: Path, frame: int) -> np.ndarray | None:
    """BGR uint8 ``[H, W, 3]`` of an image (or a gzipped one, as some Debian docs are) or a video frame."""
    if path.suffix == ".avi":
        cap = cv2.VideoCapture(str(path))
        cap.set(cv2.CAP_PROP_POS_FRAMES, frame)
        ok, img = cap.read()
        cap.release()
        return img if ok else None
    gz = path.with_name(path.name + ".gz")
    if not path.is_file():  # no imread: OpenCV would print its own warning about the file
        if not gz.is_file():
            return None
        return cv2.imdecode(np.frombuffer(gzip.decompress(gz.read_bytes()), np.uint8), cv2.IMREAD_COLOR)
    return cv2.imread(str(path), cv2.IMREAD_COLOR)


def load_view(view: View, opencv_data: Path = OPENCV_DATA) -> np.ndarray:
    """The whole photo of ``view`` as RGB uint8 ``[H, W, 3]``.

    A missing file raises FileNotFoundError naming it and how to install it.
    """
    if view.source == "sklearn":
        try:
            from sklearn.datasets import load_sample_image
        except ImportError:
            raise FileNotFoundError(f"{view.name}: scikit-learn's sample photo needs scikit-learn: "
                                    f"pip install scikit-learn") from None
        return np.ascontiguousarray(load_sample_image(view.name))
    path = opencv_data / view.name
    bgr = _read_opencv(path, view.frame)
    if bgr is None:
        raise FileNotFoundError(
            f"{path}: not found or unreadable; install OpenCV's sample data (Debian's opencv-doc: "
            f"bash system-packages.sh) or pass the folder that holds it"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _grabcut(rgb: np.ndarray) -> np.ndarray:
    """Foreground mask ``[h, w]`` float32 {0, 1} of an object that fills most of ``rgb`` ([h, w, 3])."""
    s = 160 / max(rgb.shape[:2])  # GrabCut at 160 px: fast, and the mask is upscaled anyway
    small = cv2.resize(rgb, (max(1, round(rgb.shape[1] * s)), max(1, round(rgb.shape[0] * s))), interpolation=cv2.INTER_AREA)
    h, w = small.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cv2.setRNGSeed(0)  # GrabCut's k-means starts from OpenCV's global RNG: same mask every run
    cv2.grabCut(small, mask, (int(w * 0.04), int(h * 0.04), int(w * 0.92), int(h * 0.92)),
                np.zeros((1, 65)), np.zeros((1, 65)), 4, cv2.GC_INIT_WITH_RECT)
    fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)
    return cv2.resize(fg, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)


def cut_view(view: View, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The object's bounding crop of ``image`` ([H, W, 3]) and its mask ([h, w] float32 in [0, 1]):
    1 inside ``view.quad`` (the whole crop when there is none), or on the GrabCut foreground."""
    quad = np.asarray(view.quad if view.quad is not None else
                      ((0, 0), (image.shape[1], 0), (image.shape[1], image.shape[0]), (0, image.shape[0])), np.float32)
    x1, y1 = np.floor(quad.min(0)).astype(int).clip(0)
    x2, y2 = np.ceil(quad.max(0)).astype(int)
    crop = image[y1:y2, x1:x2]
    mask = np.zeros(crop.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, np.round(quad - [x1, y1]).astype(np.int32), 1)
    mask = mask.astype(np.float32)
    if view.cutout:
        fg = mask * _grabcut(crop)
        if fg.mean() >= 0.1 * mask.mean():  # a cut that lost the object keeps the quad instead
            mask = fg
    return crop, mask


def used_files() -> list[tuple[str, str, str]]:
    """``(source, file, licence)`` of every file the check set reads, sorted, once each."""
    views = [v for o in OBJECTS for v in o.views] + list(BACKGROUNDS)
    return sorted({(v.source, v.name, licence(v)) for v in views})


def load_training_photos(opencv_data: Path = OPENCV_DATA) -> tuple[np.ndarray, ...]:
    """:data:`TRAINING_PHOTOS` as BGR float32 ``[H, W, 3]`` arrays (0-255), in order.

    A missing file raises FileNotFoundError naming it and how to install it.
    """
    return tuple(cv2.cvtColor(load_view(v, opencv_data), cv2.COLOR_RGB2BGR).astype(np.float32)
                 for v in TRAINING_PHOTOS)
