"""A service of your own that trusts Hecate's access cookie: GET /hello -> {"hello": user id}.

It verifies the token itself with hecate.verify (no call to Hecate; `pip install 'hecate[verify]'`
gives the module with pyjwt only) and lets the SPA's origin call it with credentials:

    JWT_SECRET=... SPA_ORIGIN=http://localhost:4200 \
        uvicorn --app-dir examples/downstream --factory app:create_app --port 8000

The browser sends Hecate's `access` cookie only to hosts it belongs to: the same host name as
Hecate (any port), or every subdomain of COOKIE_DOMAIN (Hecate on api.example.com and this
service on notes.example.com need COOKIE_DOMAIN=example.com).

The same in Flask, with flask-cors:

    verifier = Verifier(secret=os.environ["JWT_SECRET"], allowed_origins=[spa_origin])
    CORS(app, origins=[spa_origin], supports_credentials=True)

    @app.get("/hello")
    @verifier.require_user
    def hello():
        return {"hello": flask.g.user_id}
"""

import os
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from starlette.middleware.cors import CORSMiddleware

from hecate.verify import Verifier


def create_app(secret: str | None = None, spa_origin: str | None = None) -> FastAPI:
    secret = secret or os.environ["JWT_SECRET"]  # Hecate's JWT_SECRET (or use jwks_url=...)
    spa_origin = spa_origin or os.environ.get("SPA_ORIGIN", "http://localhost:4200")
    # allowed_origins: the pages that may POST/PUT/DELETE here (the cookie is sent with any
    # site's request under SameSite=None, so this service needs Hecate's CSRF check too).
    verifier = Verifier(secret=secret, allowed_origins=[spa_origin])

    app = FastAPI(title="Hecate downstream example", openapi_url=None)
    verifier.install_problem_handler(app)  # 401/403 as problem JSON, like Hecate's
    # Credentials for this exact origin (never "*"), or the browser hides every answer from the
    # SPA. CORS wraps the routes, so 401s carry its headers and the SPA can read them.
    app.add_middleware(CORSMiddleware, allow_origins=[spa_origin], allow_credentials=True,
                       allow_methods=["GET", "POST", "PUT", "DELETE"],
                       allow_headers=["Content-Type"])

    @app.get("/hello")
    async def hello(user: Annotated[dict[str, Any], Depends(verifier.fastapi_user)]
                    ) -> dict[str, str]:
        return {"hello": user["sub"]}

    return app
