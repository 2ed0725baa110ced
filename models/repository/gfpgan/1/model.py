from photocraft_models.faces import Gfpgan
from photocraft_models.serving import serve

TritonPythonModel = serve("filter", Gfpgan)
