"""The one pager: lazy iteration over an OData list that follows ``@odata.nextLink``.

A page is fetched only when the items before it have been consumed. A next link is followed only
on the resource's own configured host (the transport refuses any other before sending the token).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping

import pandas as pd

from .errors import ServiceError
from .records import records_frame

#: Fetch one page: the path (first page, with ``params``) or an absolute next link; returns the body.
FetchPage = Callable[[str, dict | None], dict]


class ItemPaged(Iterator[dict]):
    """Items of a paged list, as sent. Iterate it, or use :meth:`by_page` or :meth:`to_frame`.

    ``limit`` stops after that many items (``top`` in the client's verbs). A pager is consumed
    once, like any iterator.
    """

    def __init__(self, fetch: FetchPage, path: str, params: dict | None = None, *, limit: int | None = None,
                 kinds: Mapping[str, str] | None = None, operation: str = "list") -> None:
        self._fetch = fetch
        self._path = path
        self._params = params
        self._limit = limit
        self._kinds = kinds
        self._operation = operation
        self._pages: Iterator[list[dict]] | None = None
        self._pending: deque[dict] = deque()  # the rest of a page that iteration has started

    def __repr__(self) -> str:
        return f"<ItemPaged {self._operation}>"

    def __iter__(self) -> ItemPaged:
        return self

    def __next__(self) -> dict:
        while not self._pending:
            self._pending.extend(next(self._remaining_pages()))
        return self._pending.popleft()

    def by_page(self) -> Iterator[list[dict]]:
        """The remaining pages, each a list of items as sent (the last one cut short by ``limit``)."""
        if self._pending:
            page, self._pending = list(self._pending), deque()
            yield page
        pages = self._remaining_pages()
        while True:  # not ``yield from``: dropping this generator must not close the shared one
            try:
                page = next(pages)
            except StopIteration:
                return
            yield page

    def _remaining_pages(self) -> Iterator[list[dict]]:
        if self._pages is None:
            self._pages = self._fetch_pages()
        return self._pages

    def _fetch_pages(self) -> Iterator[list[dict]]:
        left = self._limit
        link: str | None = self._path
        params = self._params
        followed: set[str] = set()
        while link is not None and (left is None or left > 0):
            body = self._fetch(link, params)
            params = None  # a next link carries its own query
            items = body.get("value") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise ServiceError(f"{self._operation}: the answer has no 'value' list, so it is not a page of items.")
            if left is not None:
                items = items[:left]
                left -= len(items)
            if items:
                yield items
            link = body.get("@odata.nextLink")
            if link is not None:
                if link in followed:
                    raise ServiceError(f"{self._operation}: the service sent the same next-page link twice; stopped.")
                followed.add(link)

    def to_frame(self) -> pd.DataFrame:
        """Every remaining item in a typed DataFrame (see :mod:`connector.records`)."""
        return records_frame((item for page in self.by_page() for item in page), self._kinds)
