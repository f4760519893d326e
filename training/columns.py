"""The column layouts each training stage accepts (TRL's dataset formats) and the checks of their shapes."""

from __future__ import annotations

from distill_core.errors import DataError

from .mixture import DatasetSpec

# What each stage needs; each tuple is one accepted layout (TRL's formats).
SFT_LAYOUTS = (("messages",), ("prompt", "completion"), ("text",))
PREFERENCE_LAYOUTS = (("prompt", "chosen", "rejected"), ("chosen", "rejected"))
CHAT_ROLES = ("system", "user", "assistant")  # the roles the Zephyr template (and TRL's formats) render


def check_columns(
    ds, spec: DatasetSpec, layouts: tuple[tuple[str, ...], ...], source: str, stage: str
) -> tuple[str, ...]:
    """The first accepted layout the dataset's columns hold; a one-line error naming the layouts otherwise."""
    cols = set(ds.column_names)
    for layout in layouts:
        if set(layout) <= cols:
            return layout
    wanted = " or ".join("+".join(layout) for layout in layouts)
    raise DataError(
        f"{source}: dataset '{spec.id}' split '{spec.split}' has columns {sorted(cols)} but {stage} needs {wanted}; "
        f"map your data to one of these layouts or set 'columns' in the dataset_mixture entry"
    )


def column_shape(ds, spec: DatasetSpec, column: str, source: str) -> str:
    """'text' (a string) or 'conversation' (a list of {role, content}); checked on the first rows."""
    shapes = set()
    for i in range(min(len(ds), 8)):
        value = ds[i][column]
        if isinstance(value, str):
            shapes.add("text")
        elif (
            isinstance(value, list)
            and value
            and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in value)
        ):
            shapes.add("conversation")
        else:
            raise DataError(
                f"{source}: dataset '{spec.id}' row {i} column '{column}' is neither text nor a list of "
                f"{{role, content}} "
                f"messages (got {str(value)[:80]!r}); fix the data"
            )
    if len(shapes) > 1:
        raise DataError(f"{source}: dataset '{spec.id}' column '{column}' mixes text and message lists; use one shape")
    if shapes == {"conversation"}:
        check_roles(ds, spec, column, source)
    return shapes.pop() if shapes else "text"


def check_roles(ds, spec: DatasetSpec, column: str, source: str) -> None:
    """Every message of every row has a role the chat templates know; found in Arrow, without a Python loop per row.

    ShareGPT-style data says human/gpt: the chat template would fail on it mid-tokenization with a traceback
    (or, with a lenient template, render it silently wrong), so it is refused before the model loads.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    messages = ds.with_format("arrow")[:][column]
    if (
        not (pa.types.is_list(messages.type) or pa.types.is_large_list(messages.type))
        or not pa.types.is_struct(messages.type.value_type)
        or messages.type.value_type.get_field_index("role") < 0
    ):
        return  # not a uniform list of structs: column_shape judged the rows it looked at
    flat = pc.list_flatten(messages)
    roles = pc.struct_field(flat, "role")
    known = pc.is_in(roles, value_set=pa.array(CHAT_ROLES, type=roles.type))
    first = pc.index(known, False).as_py()
    if first < 0:
        return
    row, role = pc.list_parent_indices(messages)[first].as_py(), roles[first].as_py()
    found = "a message without a role" if role is None else f"a message with role {role!r}"
    raise DataError(
        f"{source}: dataset '{spec.id}' split '{spec.split}' row {row} column '{column}' has {found}; valid "
        f"roles are {', '.join(CHAT_ROLES)}; rename the roles (ShareGPT's human -> user, gpt -> assistant)"
    )


def prepare_sft_columns(ds, spec: DatasetSpec, layout: tuple[str, ...], source: str):
    """Keep only the layout's columns and check their shapes (TRL reads any extra column as a format hint)."""
    ds = ds.select_columns(list(layout))
    shapes = {c: column_shape(ds, spec, c, source) for c in layout}
    if layout == ("messages",) and shapes["messages"] != "conversation":
        raise DataError(
            f"{source}: dataset '{spec.id}' column 'messages' must be a list of {{role, content}} messages, "
            f"not text; put plain text in a 'text' column instead"
        )
    if layout == ("prompt", "completion") and shapes["prompt"] != shapes["completion"]:
        raise DataError(
            f"{source}: dataset '{spec.id}' has a {shapes['prompt']} 'prompt' but a {shapes['completion']} "
            f"'completion'; give both the same shape"
        )
    if layout == ("text",) and shapes["text"] != "text":
        raise DataError(f"{source}: dataset '{spec.id}' column 'text' holds messages; name that column 'messages'")
    return ds
