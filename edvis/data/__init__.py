"""Datasets and what is done to their images. Imports no torch.

``dataset`` reads the Tiny ImageNet layout and ImageFolder trees (``walk`` lists their image
files, links kept inside the dataset root; ``errors`` holds DatasetError); ``synthetic`` draws the
embedded dataset; ``download`` fetches Tiny ImageNet; ``perturb`` holds the perturbations, their
setting names and the order every table lists them in.
"""

from edvis.data import perturb
from edvis.data.dataset import Dataset, Sample, load_image, load_images, open_dataset, rendered_boxes
from edvis.data.download import TINY_IMAGENET_MD5, TINY_IMAGENET_URL, DownloadError, fetch_tiny_imagenet
from edvis.data.errors import DatasetError
from edvis.data.perturb import CLEAN, PERTURBATIONS, apply, order_settings, paper_set, setting_kind
from edvis.data.subset import image_subset
from edvis.data.synthetic import CATALOGUE, MAX_CLASSES, draw, write_dataset
from edvis.data.walk import IMAGE_EXTENSIONS

__all__ = [
    "CATALOGUE", "CLEAN", "IMAGE_EXTENSIONS", "MAX_CLASSES", "PERTURBATIONS", "TINY_IMAGENET_MD5", "TINY_IMAGENET_URL",
    "Dataset", "DatasetError", "DownloadError", "Sample", "apply", "draw", "fetch_tiny_imagenet", "load_image",
    "image_subset", "load_images", "open_dataset", "order_settings", "paper_set", "perturb", "rendered_boxes",
    "setting_kind", "write_dataset",
]
