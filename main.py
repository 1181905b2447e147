"""Google Cloud Functions / Cloud Run functions entry point (target ``hecate``).

    functions-framework --target hecate --source main.py    # locally: make function
    gcloud functions deploy hecate --entry-point hecate ...  # see README, "Deploying"

Importing this builds nothing: the app is built at the first request, in the serving process
(hecate/serverless.py).
"""

import functions_framework

from hecate.serverless import cloud_function

hecate = functions_framework.http(cloud_function)
