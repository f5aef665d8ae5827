"""The built-in editors, one file each, named as the editor (the CLI lists them by file name);
importing this package registers them in :data:`ripple.editing.editor.EDITORS`.

* :mod:`.rome`: ROME, one fact at one layer (rank-one closed form);
* :mod:`.memit`: MEMIT, many facts spread over a range of layers (least squares);
* :mod:`.emmet`: EMMET, MEMIT's plan with ROME's equality constraint, batched;
* :mod:`.alphaedit`: AlphaEdit, MEMIT's plan projected onto the null space of preserved keys;
* :mod:`.ft`: FT-L, constrained fine-tuning of one MLP output projection;

Editors that live in a package of their own register through :data:`PLUGINS` (name -> module),
imported by name when the registry is first read, so that the editing layer does not depend on
their packages (they depend on it):

* ``rledit`` (:mod:`ripple.rledit.editor`): RLEdit, edits predicted by a hypernetwork trained over
  edit sequences.
"""

import importlib

from ripple.editing.editors import alphaedit, emmet, ft, memit, rome  # noqa: F401 (they register)

#: Editors outside this package: name -> the module that registers it.
PLUGINS = {"rledit": "ripple.rledit.editor"}

for _module in PLUGINS.values():
    importlib.import_module(_module)
