"""`experiment=glob(paper/ablation_*)`: Hydra's glob sweeps only a group's top-level options, and the
paper experiments live one folder down (conf/experiment/paper/). Before Hydra parses the command
line, such a glob is expanded here into the comma list Hydra sweeps over; globs without a folder are
left to Hydra."""

from __future__ import annotations

import re
from pathlib import Path

from embedforge.errors import ConfigError

_GLOB = re.compile(r"^(?P<key>[+~]?[\w./@-]+)=glob\((?P<pattern>[^,()]*/[^,()]*)\)$")


def expand_nested_globs(argv: list[str], conf_dir: Path) -> list[str]:
    out = []
    for arg in argv:
        match = _GLOB.match(arg)
        if not match:
            out.append(arg)
            continue
        group = match["key"].lstrip("+~").split("@")[0].replace(".", "/")
        root = conf_dir / group
        names = sorted(str(p.relative_to(root).with_suffix("")) for p in root.glob(f"{match['pattern'].strip()}.yaml")
                       if not p.name.startswith("_"))
        if not names:
            raise ConfigError(f"{match['key']}: glob({match['pattern']}) matches no config under {root}")
        out.append(f"{match['key']}={','.join(names)}")
    return out
