"""An import-linter contract that allows only the stdlib and the own package (an allow-list).

import-linter's ``forbidden`` contract needs every forbidden package named (a deny-list that
a new dependency slips past), and with ``include_external_packages`` the stdlib is external
too, so forbidding ``*`` would forbid ``datetime``. This contract inverts it: a source module
may import its own root package (the layers contract orders those) and the stdlib
(``sys.stdlib_module_names``); any other package is a violation. pyproject.toml registers it
under ``contract_types``; lint-imports finds it because it puts the working directory on the path.
"""

from __future__ import annotations

import sys

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


class StdlibOnlyContract(Contract):
    """Source modules and their descendants import only the stdlib and their root package.

    Options: ``source_modules`` (packages to check), ``allowed_modules`` (optional, further
    top-level packages that are allowed; empty by default).
    """

    type_name = "stdlib_only"

    source_modules = fields.ListField(subfield=fields.StringField())
    allowed_modules = fields.ListField(subfield=fields.StringField(), required=False, default=[])

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        """Every direct import of a package outside the allow-list, with its line numbers."""
        sources: list[str] = list(self.source_modules)  # type: ignore[call-overload]
        allowed = (
            set(sys.stdlib_module_names)
            | {name.split(".")[0] for name in sources}
            | set(self.allowed_modules)  # type: ignore[call-overload]
        )
        illegal: list[tuple[str, str, list[int]]] = []
        for source in sources:
            for importer in sorted({source} | graph.find_descendants(source)):
                for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                    if imported.split(".")[0] in allowed:
                        continue
                    details = graph.get_import_details(importer=importer, imported=imported)
                    lines = sorted({d["line_number"] for d in details})
                    illegal.append((importer, imported, lines))
        return ContractCheck(kept=not illegal, metadata={"illegal": illegal})

    def render_broken_contract(self, check: ContractCheck) -> None:
        """One line per illegal import: importer -> imported (line numbers)."""
        for importer, imported, lines in check.metadata["illegal"]:
            where = ", ".join(map(str, lines))
            output.print_error(f"{importer} -> {imported} (l.{where})", bold=False)
            output.new_line()
        output.print_error(
            "domain/ and workflow/ may import only the stdlib and pacsflow's inner layers; "
            "put what needs a third-party package in an adapter behind a port.",
            bold=False,
        )
