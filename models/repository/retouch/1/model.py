from photocraft_models.retouch import Retouch
from photocraft_models.serving import serve

TritonPythonModel = serve("filter", Retouch)
