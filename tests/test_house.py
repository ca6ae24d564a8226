"The house: one module per notebook, in pipeline order, and every module imports only modules before it (no back-edges, no circles)."
import ast, json, re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def module_order() -> list[str]:
    "The exported modules in notebook order (the number in a notebook's name is its place in the pipeline)."
    order = []
    for nb in sorted((ROOT / 'nbs').glob('[0-9]*.ipynb')):
        for cell in json.loads(nb.read_text())['cells']:
            m = re.match(r'#\|\s*default_exp\s+(\S+)', ''.join(cell['source']))
            if m: order.append(m.group(1)); break
    return order


def imported_modules(name: str) -> set[str]:
    "The e2gan modules `e2gan/<name>.py` imports, at the top or inside functions."
    tree, found = ast.parse((ROOT / 'e2gan' / f'{name}.py').read_text()), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.level == 1: found.add(node.module.split('.')[0])
            elif node.module.startswith('e2gan.'): found.add(node.module.split('.')[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split('.')[1] for a in node.names if a.name.startswith('e2gan.')}
    return found - {'_modidx'}


def test_every_module_comes_from_one_notebook():
    order = module_order()
    assert len(order) == len(set(order)), f'two notebooks export the same module: {order}'
    on_disk = {p.stem for p in (ROOT / 'e2gan').glob('*.py')} - {'__init__', '_modidx'}
    assert on_disk == set(order), f'modules without a notebook: {on_disk - set(order)}; notebooks without a module: {set(order) - on_disk}'


def test_modules_import_only_earlier_modules():
    order = module_order()
    place = {m: i for i, m in enumerate(order)}
    back_edges = [(m, dep) for m in order for dep in imported_modules(m) if place[dep] >= place[m]]
    assert not back_edges, f'modules importing themselves or later modules of the pipeline: {back_edges}'
