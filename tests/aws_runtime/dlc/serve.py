"""The image's entry point (`serve` -> sagemaker_huggingface_inference_toolkit.serving.main) under a temp root.

Run with the DLC environment's Python. SAGEMAKER_BASE_DIR (honoured by sagemaker-inference) puts
/opt/ml under a temporary root; the one path the toolkit cannot move, the model server config file
/etc/sagemaker-mms.properties, is redirected to MMS_CONFIG_FILE. Nothing else is changed: the
toolkit writes the config, would pip-install code/requirements.txt, starts multi-model-server with
its handler service and waits on it, as in the container.
"""
import os
import sys

from sagemaker_inference import model_server

from sagemaker_huggingface_inference_toolkit import mms_model_server, serving

config = os.environ["MMS_CONFIG_FILE"]
model_server.MMS_CONFIG_FILE = config
mms_model_server.MMS_CONFIG_FILE = config

if __name__ == "__main__":
    sys.exit(serving.main())
