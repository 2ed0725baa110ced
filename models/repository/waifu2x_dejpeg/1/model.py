from photocraft_models.serving import serve
from photocraft_models.superres import Waifu2xDejpeg

TritonPythonModel = serve("filter", Waifu2xDejpeg)
