"""Code fingerprints find every import a module can execute, wherever the statement sits."""

from __future__ import annotations

from reprobook.execution.fingerprint import imported_names

NESTED = '''
import top
from pkg import sub
from . import sibling
from .. import cousin

def function():
    import in_function
    class Inner:
        from in_class import thing

try:
    import in_try
except ImportError:
    import in_except
else:
    import in_else
finally:
    import in_finally

with open("x") as handle:
    import in_with

for item in range(3):
    import in_for
else:
    import in_for_else

while False:
    import in_while

if TYPE_CHECKING:
    import only_for_types

match value:
    case 1:
        import in_match
'''


def test_imports_in_every_kind_of_block_are_found():
    names = imported_names(NESTED, "package.module")
    expected = {
        "top", "pkg", "pkg.sub", "package.module", "package.module.sibling", "package", "package.cousin",
        "in_function", "in_class", "in_class.thing", "in_try", "in_except", "in_else", "in_finally",
        "in_with", "in_for", "in_for_else", "in_while", "only_for_types", "in_match",
    }
    assert expected <= names


def test_type_checking_imports_can_be_left_out():
    names = imported_names(NESTED, "package.module", type_checking=False)
    assert "only_for_types" not in names and "in_match" in names


def test_magics_and_syntax_errors_are_not_code():
    assert imported_names("%matplotlib inline\n!pip list\nimport real") == {"real"}
    assert imported_names("def broken(:\n    import hidden") == set()
