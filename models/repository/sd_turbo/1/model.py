from photocraft_models.generate import TextToImage
from photocraft_models.serving import serve

TritonPythonModel = serve("generator", TextToImage)
