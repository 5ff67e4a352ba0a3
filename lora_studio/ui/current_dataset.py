"""One current dataset for the Dataset and Train tabs.

The Train tab's `dataset` field is the single truth: what Start trains. The Dataset tab copies it
into its folder box when the user arrives, writes it back when a review succeeds, and refuses to
edit a review that is not of the folder both tabs now name — so nobody reviews one folder and trains
another, and after a failed review nothing can edit the previous folder's decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lora_studio.data.review import DatasetReview
from lora_studio.errors import UserError


@dataclass
class DatasetSession:
    """One browser session's review (kept in gr.State)."""

    review: DatasetReview | None = None
    shown: list[str] = field(default_factory=list)  # frame ids in gallery order (a click gives an index)
    selected: str | None = None
    synced_dataset: str | None = None  # the Train tab's dataset field when the folder box last followed it

    def clear(self) -> None:
        """Forget the review (a failed review, or another folder chosen): the gallery empties."""
        self.review, self.shown, self.selected = None, [], None


def same_folder(a: str | Path | None, b: str | Path | None) -> bool:
    """Whether two folder names are the same folder ('~/frames/' and '/home/ann/frames' are)."""
    if not a or not b or not str(a).strip() or not str(b).strip():
        return False
    return Path(str(a).strip()).expanduser().resolve() == Path(str(b).strip()).expanduser().resolve()


def need_review(session: DatasetSession, folder: str | None = None) -> DatasetReview:
    """The session's review, if it is of `folder` (the folder box as the user sees it); else what to do."""
    if session.review is None:
        raise UserError("no folder reviewed yet", "press Review first")
    if folder is not None and not same_folder(folder, session.review.folder):
        raise UserError(f"the gallery shows {session.review.folder}, not {folder.strip() or 'an empty folder box'}",
                        "press Review to check the folder in the box before keeping, excluding or editing")
    return session.review


def follow_train_tab(session: DatasetSession, train_dataset: str | None) -> str | None:
    """On arriving at the Dataset tab: the folder the box must now show, or None when it stays.

    The box follows the Train tab's field when that changed since it was last copied; a review of
    another folder is dropped then, so the gallery never shows what will not be trained.
    """
    if train_dataset is None or train_dataset == session.synced_dataset:
        return None
    session.synced_dataset = train_dataset
    if session.review is not None and not same_folder(train_dataset, session.review.folder):
        session.clear()
    return train_dataset


def reviewed(session: DatasetSession, folder: str) -> str:
    """After a successful review: the folder the Train tab's field is set to (the one current dataset)."""
    session.synced_dataset = folder.strip()
    return session.synced_dataset
