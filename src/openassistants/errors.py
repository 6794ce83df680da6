"""The exception tree services raise, and how each becomes OpenAI's error envelope.

    APIError                       500 server_error (never raised on purpose)
    ├── InvalidRequest             400 invalid_request_error: bad parameters, illegal state changes
    ├── AuthenticationError        401 invalid_request_error, code invalid_api_key
    ├── NotFound                   404 invalid_request_error: unknown id or route, or another tenant's
    ├── PayloadTooLarge            413 invalid_request_error
    ├── RateLimited                429 requests, code rate_limit_exceeded: a key's requests per minute
    └── ServiceUnavailable         503 server_error: storage unreachable; safe for the SDK to retry

Business conflicts are 400, not 409: the SDK retries 409 and 5xx automatically, which would repeat a
POST that already did its work (see the spec notes, §6).
"""

from __future__ import annotations

from typing import Any, ClassVar


class APIError(Exception):
    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"

    def __init_subclass__(cls, *, status: int, error_type: str = "invalid_request_error") -> None:
        super().__init_subclass__()
        cls.status_code = status
        cls.error_type = error_type

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def to_body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(APIError, status=400):
    pass


class AuthenticationError(APIError, status=401):
    pass


class NotFound(APIError, status=404):
    pass


class PayloadTooLarge(APIError, status=413):
    pass


class RateLimited(APIError, status=429, error_type="requests"):
    pass


class ServiceUnavailable(APIError, status=503, error_type="server_error"):
    pass


def not_found(kind: str, object_id: str) -> NotFound:
    """OpenAI's wording: ``No assistant found with id 'asst_abc'.``"""
    return NotFound(f"No {kind} found with id '{object_id}'.", param=None)
