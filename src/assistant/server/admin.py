"""Document management over HTTP, for operators: /api/documents (uploads.py does the work).

    POST   /api/documents            multipart: files (any field name), collection, create
    GET    /api/documents            ?collection=  the documents, and an ingest under way
    DELETE /api/documents/{id}       ?collection=  an uploaded document, from the index too

The routes exist only when the `admin_key` setting is set. The guard in app.py checks
`Authorization: Bearer <admin key>` on every request before it gets here (the chat key and
the page's session cookie never grant it), refuses other origins, and caps an upload's body
at `upload_max_files` x `upload_max_bytes` (plus room for the form).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..catalog import DEFAULT, CollectionError
from ..locking import IngestBusy
from ..settings import Settings
from ..uploads import DocumentManager, DocumentNotFound, Incoming, NotRemovable
from .api import ApiError

log = logging.getLogger(__name__)

ADMIN_PREFIX = "/api/documents"
FORM_OVERHEAD_BYTES = 64 * 1024  # multipart headers and the small fields, per request
TRUE = {"1", "true", "yes", "on"}
BUSY_RETRY_AFTER_S = 30


def upload_cap(settings: Settings) -> int:
    """The largest body POST /api/documents accepts."""
    return settings.upload_max_files * settings.upload_max_bytes + FORM_OVERHEAD_BYTES


def _collection_error(exc: CollectionError) -> ApiError:
    return ApiError(exc.status, str(exc))


def _busy(exc: IngestBusy) -> ApiError:
    return ApiError(503, str(exc), {"Retry-After": str(BUSY_RETRY_AFTER_S)}, kind="server_error")


def make_admin_router(manager: DocumentManager, settings: Settings) -> APIRouter:
    router = APIRouter()
    assistant = manager.assistant

    @router.get(ADMIN_PREFIX)
    async def list_documents(
            collection: Annotated[str, Query(max_length=100)] = DEFAULT) -> dict[str, Any]:
        """The collection's documents (id, title, type, chunks, pages, ingested, source,
        removable), the collections, and the ingest under way in this collection, if any."""
        try:
            documents = await run_in_threadpool(manager.documents, collection)
        except CollectionError as exc:
            raise _collection_error(exc) from exc
        names = await run_in_threadpool(assistant.collections)
        return {"collection": collection, "documents": documents, "collections": names,
                "ingest": manager.progress.get(collection)}

    @router.post(ADMIN_PREFIX, response_model=None)
    async def upload(request: Request) -> JSONResponse:
        """Files into a collection: each is checked by its content, stored and ingested; one
        result per file. 200 when at least one file went in; 422 when none did."""
        try:
            form = await request.form(max_files=settings.upload_max_files, max_fields=20)
        except StarletteHTTPException as exc:
            if "Too many files" in str(exc.detail):
                raise ApiError(413, f"Too many files: at most {settings.upload_max_files} "
                               "in one request.") from exc
            raise ApiError(400, f"The upload could not be read: {exc.detail}") from exc
        try:
            files = [(value.filename or "", value) for _, value in form.multi_items()
                     if isinstance(value, UploadFile)]
            if not files:
                raise ApiError(422, "Send the files as multipart/form-data (any field name, "
                               "e.g. -F files=@report.pdf), with an optional field collection.")
            for name, upload in files:
                size = upload.size if upload.size is not None else 0
                if size > settings.upload_max_bytes:
                    raise ApiError(413, f"{name or 'a file'} is too large ({size} bytes; the "
                                   f"limit is {settings.upload_max_bytes} bytes per file). "
                                   "Nothing was stored.")
            collection = form.get("collection") or DEFAULT
            create = str(form.get("create") or "").strip().lower() in TRUE
            if not isinstance(collection, str):
                raise ApiError(422, "collection must be a form field, not a file.")
            incoming = [Incoming(name, upload.file) for name, upload in files]
            try:
                result = await run_in_threadpool(manager.add, collection, incoming,
                                                 create=create)
            except CollectionError as exc:
                raise _collection_error(exc) from exc
            except IngestBusy as exc:
                raise _busy(exc) from exc
        finally:
            await form.close()
        went_in = any(f["status"] in ("added", "updated", "unchanged") for f in result["files"])
        log.info("upload into %s: %s", collection,
                 ", ".join(f"{f['file']}: {f['status']}" for f in result["files"]))
        if went_in:
            return JSONResponse(result)
        reasons = "; ".join(f"{f['file'] or '(no name)'}: {f['error']}" for f in result["files"])
        return JSONResponse({"error": f"No file went in ({reasons}).", **result},
                            status_code=422)

    @router.delete(ADMIN_PREFIX + "/{document:path}")
    async def remove(document: str,
                     collection: Annotated[str, Query(max_length=100)] = DEFAULT
                     ) -> dict[str, Any]:
        """Remove an uploaded document: its file and its passages (a new index generation).
        404 when it is not in the collection, 409 when it was not uploaded."""
        try:
            return await run_in_threadpool(manager.remove, collection, document)
        except CollectionError as exc:
            raise _collection_error(exc) from exc
        except DocumentNotFound as exc:
            raise ApiError(404, str(exc)) from exc
        except NotRemovable as exc:
            raise ApiError(409, str(exc)) from exc
        except IngestBusy as exc:
            raise _busy(exc) from exc

    return router
