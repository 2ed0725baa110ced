from photocraft_models.restoration import Descratch
from photocraft_models.serving import serve

TritonPythonModel = serve("filter", Descratch)
