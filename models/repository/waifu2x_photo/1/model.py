from photocraft_models.serving import serve
from photocraft_models.superres import Waifu2xPhoto

TritonPythonModel = serve("filter", Waifu2xPhoto)
