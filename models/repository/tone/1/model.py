from photocraft_models.serving import serve
from photocraft_models.tone import Tone

TritonPythonModel = serve("filter", Tone)
