from photocraft_models.restoration import Analyze
from photocraft_models.serving import serve

TritonPythonModel = serve("analyzer", Analyze)
