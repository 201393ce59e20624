"""The desired-state API: the schema in `crds/` and the loader of `pullnix.yaml`.

Above the pure core, below the shells: the source layer hands in the bytes of
the file from a commit's tree, and gets back a checked, defaulted, frozen
`NixOSDeployment` (or a SpecError listing every problem with its file, line,
column and field path). `for_host` selects one machine's spec.
"""

from reconciler.api.convert import deployment_to_data, spec_to_data
from reconciler.api.issues import Issue, SpecError, format_path
from reconciler.api.schema import schema_json, status_schema, status_validator
from reconciler.api.spec import for_host, load_spec_file, load_spec_text, merge

__all__ = [
    "Issue",
    "SpecError",
    "deployment_to_data",
    "for_host",
    "format_path",
    "load_spec_file",
    "load_spec_text",
    "merge",
    "schema_json",
    "spec_to_data",
    "status_schema",
    "status_validator",
]
