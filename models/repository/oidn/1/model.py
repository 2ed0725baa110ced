from photocraft_models.denoise import Denoise
from photocraft_models.serving import serve

TritonPythonModel = serve("filter", Denoise)
