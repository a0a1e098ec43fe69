"""Print a pyproject's dependencies (and the extras named), one per line, for a pip layer.

The images install dependencies in a layer of their own, before the code is copied, so a
code change rebuilds only the last layer: `python pyproject_requirements.py pyproject.toml agent`.
"""

import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
print("\n".join(project.get("dependencies", [])))
for extra in sys.argv[2:]:
    print("\n".join(project["optional-dependencies"][extra]))
