from photocraft_models.serving import serve
from photocraft_models.superres import RealEsrgan

TritonPythonModel = serve("filter", RealEsrgan)
