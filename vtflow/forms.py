"""Field shapes for the Prefect UI's parameter form.

Prefect's form renders ``str | None`` (JSON schema ``anyOf [string, null]``) as two tabs, the
null one reading 'Property is type "None"'. ``OptionalText`` is the same Python value (None when
unset) shown as one plain text box: its schema is ``{"type": "string"}`` without a default,
which the server's parameter check also lets be null, and an emptied box ("") means unset.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field


def _blank_is_unset(value: Any) -> Any:
    return None if value == "" else value


def _text_box(schema: dict) -> None:
    schema.pop("anyOf", None)
    schema.pop("default", None)
    schema["type"] = "string"


OptionalText = Annotated[str | None, BeforeValidator(_blank_is_unset), Field(json_schema_extra=_text_box)]
