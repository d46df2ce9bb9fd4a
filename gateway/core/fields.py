"""Field types shared by the settings, the safety policies and the admin API's schemas."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StringConstraints
from pydantic_core import PydanticCustomError


def _refuse_nul(text: str) -> str:
    if "\x00" in text:
        raise PydanticCustomError("nul_character", "may not contain NUL characters")
    return text


NoNul = AfterValidator(_refuse_nul)
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
