"""The `local` image storage: a folder that the local router serves at `<base>/images/<key>`."""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from bootfleet.providers.storage.base import Image, ImageNotFoundError, check_image_key


class LocalStorage:
    """A folder on this machine; the router serves it at /images/."""

    def __init__(self, folder: str | Path, public_base_url: str | None = None):
        self.folder = Path(folder).resolve()
        self.public_base_url = public_base_url
        self.where = f"folder {self.folder}"

    def _path(self, key: str) -> Path:
        return self.folder / check_image_key(key)

    def image_url(self, key: str, base_url: str) -> str:
        if self.public_base_url:
            return f"{self.public_base_url}/{quote(key)}"
        return f"{base_url}/images/{quote(key)}"

    def image_put(self, key: str, path: Path) -> Image:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename, so a node never fetches half a kernel.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                shutil.copyfileobj(src, out, 1024 * 1024)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self._image(target)

    def image_list(self, prefix: str = "") -> list[Image]:
        if not self.folder.is_dir():
            return []
        images = []
        for path in self.folder.rglob("*"):
            if path.is_file() and not path.name.startswith(".upload-"):
                image = self._image(path)
                if image.key.startswith(prefix):
                    images.append(image)
        return sorted(images, key=lambda i: i.key)

    def image_delete(self, key: str) -> None:
        path = self._path(key)
        if not path.is_file():
            raise ImageNotFoundError(f"no image {key!r} in {self.where}")
        path.unlink()

    def _image(self, path: Path) -> Image:
        stat = path.stat()
        return Image(path.relative_to(self.folder).as_posix(), stat.st_size,
                     datetime.fromtimestamp(stat.st_mtime, timezone.utc))
