from photocraft_models.colorize import Colorize
from photocraft_models.serving import serve

TritonPythonModel = serve("filter", Colorize)
