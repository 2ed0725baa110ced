from photocraft_models.segmentation import Selfie
from photocraft_models.serving import serve

TritonPythonModel = serve("segmenter", Selfie)
