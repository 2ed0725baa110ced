from photocraft_models.segmentation import U2Net
from photocraft_models.serving import serve

TritonPythonModel = serve("segmenter", U2Net)
