"""The `hydra/sweeper=netkiln_basic` config node (import-light: Hydra imports it at every start).

No `from __future__ import annotations`: Hydra execs plugin modules outside sys.modules, where
dataclasses cannot resolve string annotations.
"""

from dataclasses import dataclass
from typing import Dict, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class NetkilnBasicSweeperConf:
    _target_: str = "hydra_plugins.netkiln_basic_sweeper.basic_sweeper.NetkilnBasicSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="netkiln_basic", node=NetkilnBasicSweeperConf,
                             provider="netkiln")
