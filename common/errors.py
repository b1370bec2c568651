"""Errors that reach a client: one stable code, a human message, and the HTTP status it maps to.

Every layer (CLI, WebSocket, REST, MQTT) reports failures as ``{"code", "message"}`` built from these,
so a client can switch on ``code`` whatever transport it uses.
"""

from __future__ import annotations


class HgrError(Exception):
    """An error meant for the caller. ``code`` is stable API; ``message`` is for people."""

    code: str = "internal_error"
    status: int = 500
    headers: dict[str, str] | None = None  # extra HTTP response headers (e.g. Retry-After)

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class ImageError(HgrError):
    """The bytes are not an image we accept. ``code`` says which rule failed."""

    status = 400


class ImageTooLarge(ImageError):
    code = "image_too_large"
    status = 413


class TooManyPixels(ImageError):
    code = "too_many_pixels"
    status = 413


class UnsupportedImage(ImageError):
    code = "unsupported_format"
    status = 415


class CorruptImage(ImageError):
    code = "corrupt_image"
    status = 400


class EmptyImage(ImageError):
    code = "empty_image"
    status = 400


class ModelUnavailable(HgrError):
    code = "model_unavailable"
    status = 503


class ConfigError(HgrError):
    code = "config_error"
    status = 500
