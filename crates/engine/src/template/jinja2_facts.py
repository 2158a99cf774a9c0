"""Regenerates jinja2_facts.json: each case rendered by Jinja2 in the environment
flatmachines 1.0.0 builds (flatmachines/flatmachine.py: `Environment(finalize=...)` printing
lists and dicts as JSON, the `fromjson` filter, and `_render_template`'s path and JSON rules).

    python3 -m venv venv && venv/bin/pip install jinja2==3.1.6
    venv/bin/python jinja2_facts.py      # writes jinja2_facts.json next to this file

The facts it writes are what jinja2_facts.rs tests the renderer against.
"""
import copy, json, math, re, sys
import jinja2
from jinja2 import Environment

def _json_finalize(value):
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value

env = Environment(finalize=_json_finalize)
env.filters['fromjson'] = json.loads

_PATH_PATTERN = re.compile(r'^(output|context|input)(\.[a-zA-Z_][a-zA-Z0-9_]*)+$')

def resolve_path(path, variables):
    value = variables
    for part in path.split('.'):
        if isinstance(value, dict):
            value = value.get(part)
        else:
            return None
    return value

def render_template(template_str, variables):
    """Reference _render_template: returns (rendered_string_or_None, native)."""
    if '{{' not in template_str and '{%' not in template_str:
        if _PATH_PATTERN.match(template_str.strip()):
            return None, resolve_path(template_str.strip(), variables)
        return None, template_str
    result = env.from_string(template_str).render(**variables)
    try:
        return result, json.loads(result)
    except (json.JSONDecodeError, TypeError):
        return result, result

C = []
def c(t, **v):
    C.append((t, v))

# ---- slicing (panic) ----
for t in ["{{ [][::-1] }}", "{{ ''[::-1] }}", "{{ 'abc'[::-1] }}", "{{ [1,2,3][::-1] }}",
          "{{ [1,2,3][::-2] }}", "{{ 'abcdef'[::-2] }}", "{{ 'abcdef'[1:5:2] }}",
          "{{ [1,2,3][10:0:-1] }}", "{{ [1,2,3][-1:] }}", "{{ 'abc'[5:] }}", "{{ [][1:] }}",
          "{{ [][:-1] }}", "{{ ''[::-2] }}", "x{{ [][::-1] }}", "x{{ ''[::-1] }}y",
          "{{ [1][::-1] }}", "{{ 'a'[::-1] }}", "{{ [1,2,3][::0] }}", "{{ [1,2,3][5:1:-1] }}",
          "{{ [1,2,3][-10::-1] }}", "{{ 'héllo'[::-1] }}"]:
    c(t)
c("{{ xs[::-1] }}", xs=[]); c("{{ s[::-1] }}", s=""); c("{{ s[::-1] }}", s="abc")
c("{{ context.xs[::-1] }}", context={"xs": []})
# ---- division ----
c("x{{ 5/0 }}"); c("{{ 5/0 }}"); c("{{ n / 0 }}", n=3); c("{{ context.n / 0 }}", context={"n": 3})
c("{{ 5.0/0 }}"); c("{{ 0/0 }}"); c("{{ 5 // 0 }}"); c("{{ 5 % 0 }}"); c("{{ 5.0 // 0 }}"); c("{{ 5.0 % 0.0 }}")
c("{{ 1/2 }}"); c("{{ 4/2 }}"); c("{{ 1/3 }}"); c("x{{ 4/2 }}"); c("{{ n / 2 }}", n=3)
# ---- wordcount ----
for s in ["hello world foo", "", "a-b c.d", "  x  y ", "a\nb\tc", "don't stop", "one,two;three", "über straße 42", "_a_ b"]:
    c("{{ s|wordcount }}", s=s)
c("{{ 42|wordcount }}")
# ---- center ----
c("{{ 'abc'|center }}"); c("[{{ 'abc'|center(9) }}]"); c("[{{ 'abc'|center(2) }}]"); c("[{{ 'ab'|center(5) }}]")
c("[{{ 'abc'|center(width=8) }}]"); c("[{{ 'a'|center(4) }}]"); c("[{{ 5|center(5) }}]"); c("[{{ ''|center(3) }}]")
# ---- truncate ----
long = "The quick brown fox jumps over the lazy dog"
for t in ["{{ s|truncate }}", "{{ s|truncate(9) }}", "{{ s|truncate(9, True) }}",
          "{{ s|truncate(9, killwords=True) }}", "{{ s|truncate(9, False, '...') }}",
          "{{ s|truncate(9, end='!') }}", "{{ s|truncate(9, leeway=0) }}",
          "{{ s|truncate(9, True, '', 0) }}", "{{ s|truncate(20) }}", "{{ s|truncate(20, leeway=0) }}",
          "{{ s|truncate(40) }}", "{{ s|truncate(38) }}", "{{ s|truncate(43) }}", "{{ s|truncate(3) }}",
          "{{ s|truncate(2) }}", "{{ s|truncate(0) }}", "{{ s|truncate(10, True, '>>', 0) }}",
          "{{ s|truncate(length=12, killwords=False, end='~', leeway=1) }}"]:
    c(t, s=long)
c("{{ 'short'|truncate(3) }}"); c("{{ 'short'|truncate(10) }}"); c("{{ 'hello world'|truncate(8) }}")
c("{{ 'hello world'|truncate(8, leeway=0) }}"); c("{{ 'helloworld'|truncate(8, leeway=0) }}")
c("{{ s|truncate }}", s="x " * 200); c("{{ (s|truncate)|length }}", s="word " * 100)
c("{{ s|truncate(5, leeway=-1) }}", s=long)
# ---- urlencode ----
for t, v in [("{{ 'a b&c/d'|urlencode }}", {}), ("{{ 'ü€'|urlencode }}", {}),
             ("{{ d|urlencode }}", {"d": {"a": 1, "b c": "d&e/f"}}),
             ("{{ d|urlencode }}", {"d": {"z": "1", "a": "2"}}),
             ("{{ [['a', 1], ['b', 'x y']]|urlencode }}", {}), ("{{ 5|urlencode }}", {}),
             ("{{ 'a+b=c?d#e%f~g_h.i-j'|urlencode }}", {}), ("{{ ''|urlencode }}", {}),
             ("{{ none|urlencode }}", {}), ("{{ d|urlencode }}", {"d": {"a": None, "b": True, "c": [1]}})]:
    c(t, **v)
# ---- striptags ----
for s in ["<p>Hello <b>World</b></p>\n  x", "&amp; &lt; &#39;", "<!-- c --> a", "a<br/>b", "a <br> b",
          "  lots   of\n\nspace  ", "<script>x</script>y", "1 < 2 and 3 > 2", "<a href='x'>link</a>"]:
    c("{{ s|striptags }}", s=s)
# ---- wordwrap ----
txt = "The quick brown fox jumps over the lazy dog and a verylongwordthatdoesnotfit here"
for t in ["{{ s|wordwrap(10) }}", "{{ s|wordwrap(10, False) }}", "{{ s|wordwrap(5, break_long_words=False) }}",
          "{{ s|wordwrap(10, wrapstring='|') }}", "{{ s|wordwrap }}", "{{ s|wordwrap(12, True, '\\n', False) }}"]:
    c(t, s=txt)
c("{{ s|wordwrap(10) }}", s="line one\nline two is longer than ten\n\nnew para")
c("{{ s|wordwrap(10, break_on_hyphens=True) }}", s="well-known-hyphenated-words here")
c("{{ s|wordwrap(10, break_on_hyphens=False) }}", s="well-known-hyphenated-words here")
c("{{ s|wordwrap(3) }}", s="  leading  spaces  ")
# ---- filesizeformat ----
for n in [0, 1, 999, 1000, 1024, 1500, 1500000, 10**9, 10**12, 10**15, 10**18, 10**24, 10**30, -1, -2000, 1.5, "2048", True]:
    c("{{ n|filesizeformat }}", n=n)
for n in [1, 1023, 1024, 1536, 1048576, 10**9, 2**80]:
    c("{{ n|filesizeformat(true) }}", n=n)
c("{{ 3000|filesizeformat(binary=True) }}")
c("{{ 'abc'|filesizeformat }}")
# ---- xmlattr ----
for d in [{"a": 1, "b": "x y", "c": None}, {"class": "a<b\"&'", "id": 5}, {}, {"u": jinja2.Undefined if False else None},
          {"t": True, "f": False}, {"l": [1, 2]}, {"bad key": 1}, {"a>": 1}, {"data-x": "1"}]:
    c("<p{{ d|xmlattr }}>", d=d)
c("<p {{ d|xmlattr(false) }}>", d={"a": 1, "b": 2})
c("<p{{ d|xmlattr(autospace=False) }}>", d={"a": 1})
c("<p{{ {'a': missing}|xmlattr }}>")
# ---- forceescape / escape ----
for s in ['<a href="x">&\'', "plain", "", 5]:
    c("{{ s|forceescape }}", s=s)
c("{{ '<b>'|escape }}"); c("{{ '<b>'|e }}"); c("{{ ('<b>'|escape)|forceescape }}")
# ---- urlize ----
for t in ["{{ s|urlize }}", "{{ s|urlize(10) }}", "{{ s|urlize(nofollow=True) }}",
          "{{ s|urlize(target='_blank') }}", "{{ s|urlize(rel='x') }}", "{{ s|urlize(15, true, '_top') }}"]:
    c(t, s="see http://example.com and www.x.org, mail a@b.com or https://example.com/path?q=1&r=2.")
for s in ["<b>http://e.com</b>", "(http://example.com)", "ftp://x.y", "example.com", "mailto:a@b.com",
          "no links here", "http://a.b/c<d>"]:
    c("{{ s|urlize }}", s=s)
# ---- methods ----
for t in ["{{ 'ab'.zfill(5) }}", "{{ '-3'.zfill(4) }}", "{{ '+3'.zfill(4) }}", "{{ 'abc'.zfill(2) }}", "{{ ''.zfill(3) }}",
          "[{{ 'ab'.ljust(5) }}]", "[{{ 'ab'.ljust(5, '*') }}]", "[{{ 'ab'.ljust(1) }}]", "[{{ 'ab'.rjust(5, '*') }}]",
          "[{{ 'ab'.center(7, '*') }}]", "{{ 'a,b,c'.rsplit(',', 1) }}", "{{ 'a b  c '.rsplit() }}",
          "{{ 'a,b'.rsplit(',') }}", "{{ 'a b c'.rsplit(None, 1) }}", "{{ 'a,b,c'.rsplit(',', maxsplit=1) }}",
          "{{ 'a,b,c'.split(',', 1) }}", "{{ 'aB1ß'.swapcase() }}", "{{ 'Straße'.casefold() }}", "{{ 'ABC'.casefold() }}",
          "{{ 'a=b=c'.partition('=') }}", "{{ 'abc'.partition('x') }}", "{{ 'a=b=c'.rpartition('=') }}",
          "{{ 'abc'.rpartition('x') }}", "{{ 'a=b'.partition('=')[2] }}", "{{ 'a'.partition('') }}",
          "{{ [1,2,3].index(2) }}", "{{ [1,2,3].index(5) }}", "{{ [1,2,1].index(1, 1) }}", "{{ ['a','b'].index('b') }}",
          "{{ [1,2,2].count(2) }}", "{{ 'banana'.count('a') }}", "{{ 'abc'.index('c') }}", "{{ 'abc'.find('z') }}",
          "{{ 'abcabc'.rfind('b') }}", "{{ 'x{}y{}'.format(1, 'a') }}", "{{ '{a}'.format(a=2) }}",
          "{{ 'Hello World'.istitle() }}", "{{ '12'.isdecimal() }}", "{{ 'ab'.isidentifier() }}",
          "{{ 'abc'.removeprefix('a') }}", "{{ 'abc'.removesuffix('c') }}", "{{ 'a\\tb'.expandtabs(4) }}",
          "{{ 'a b'.title() }}", "{{ 'ab'.startswith(('x','a')) }}", "{{ 'hello'.encode('utf-8') }}"]:
    c(t)
c("{{ d.copy() }}", d={"a": 1, "b": [1, 2]})
c("{% set e = d.copy() %}{% set _ = e.update({'z': 1}) %}{{ d }}|{{ e }}", d={"a": 1})
c("{{ d.copy() is mapping }}", d={"a": 1})
c("{{ xs.copy() }}", xs=[1, 2])
c("{{ d.get('x', 5) }}|{{ d.items()|list }}|{{ d.keys()|list }}|{{ d.values()|list }}", d={"a": 1})
c("{{ d.setdefault('a', 9) }}", d={"a": 1})
c("{{ d.pop('a') }}", d={"a": 1})
# ---- globals ----
c("{% set cy = cycler('a','b') %}{% for i in range(3) %}{{ cy.next() }}{% endfor %}")
c("{% set cy = cycler('a','b') %}{{ cy.current }}{{ cy.next() }}{{ cy.current }}{% set _ = cy.reset() %}{{ cy.current }}")
c("{% set cy = cycler() %}{{ cy.next() }}")
c("{% for x in [1,2,3] %}{{ loop.cycle('odd','even') }} {% endfor %}")
c("{% set j = joiner(', ') %}{% for x in [1,2,3] %}{{ j() }}{{ x }}{% endfor %}")
c("{% set j = joiner() %}{% for x in [1,2,3] %}{{ j() }}{{ x }}{% endfor %}")
c("{% set j = joiner('|') %}{{ j() }}a{{ j() }}b")
c("{% set pipe = joiner(' | ') %}{% for x in xs %}{% if x %}{{ pipe() }}{{ x }}{% endif %}{% endfor %}", xs=["", "a", "", "b"])
c("{{ lipsum is defined }}"); c("{{ cycler is defined }}|{{ joiner is defined }}|{{ namespace is defined }}|{{ range is defined }}|{{ dict is defined }}")
c("{{ lipsum is callable }}")
c("{% for v in [range, joiner(), cycler(1), 'a', 1, [], {}, none, lipsum, dict, namespace] %}{{ 'y' if v is callable else 'n' }}{% endfor %}")
c("{% macro m() %}x{% endmacro %}{{ 'y' if m is callable else 'n' }}{{ 'y' if m() is callable else 'n' }}")
c("{% for x in [1] %}{{ 'y' if loop is callable else 'n' }}{% endfor %}{{ 'y' if namespace() is callable else 'n' }}{{ 'y' if undefined_name is callable else 'n' }}{{ 'y' if d.missing is callable else 'n' }}", d={})
c("{{ '٣٤'|int }}|{{ '١٫٥'|float }}|{{ '١.٥'|float }}|{{ '１２'|int }}|{{ ' ٧ '|int }}|{{ '٣'|int(base=16) }}|{{ '٣x'|int }}|{{ '²'|int }}|{{ '𝟗'|int }}")
c("{{ lipsum(2, false, 5, 5).split('\\n\\n')|length }}")
c("{{ lipsum(1, false, 7, 7).split()|length }}")
c("{{ lipsum(1, false, 7, 7)[0] is upper }}|{{ lipsum(1, false, 7, 7)[-1] }}")
c("{{ lipsum(1, true, 5, 5)[:3] }}|{{ lipsum(1, true, 5, 5)[-4:] }}")
c("{{ lipsum(3, true, 5, 5).count('<p>') }}|{{ lipsum(3, true, 5, 5).count('\\n') }}")
c("{{ lipsum()|length > 0 }}|{{ lipsum().count('<p>') }}")
c("{{ lipsum(n=2, html=False).count('\\n\\n') }}")
c("{{ lipsum(0) }}")
c("{{ lipsum(2, false, 5, 6).split('\\n\\n')|length }}")
c("{{ lipsum(1, false, 7, 8).split()|length }}")
c("{{ lipsum(1, false, 7, 8)[0] is upper }}|{{ lipsum(1, false, 7, 8)[-1] }}")
c("{{ lipsum(1, true, 5, 6)[:3] }}|{{ lipsum(1, true, 5, 6)[-4:] }}")
c("{{ lipsum(3, true, 5, 6).count('<p>') }}|{{ lipsum(3, true, 5, 6).count('\\n') }}")
c("{{ lipsum(1, false, 20, 21)|wordcount }}")
c("{{ lipsum(1, false, 1, 2).split()|length }}|{{ lipsum(1, false, 1, 2)[-1] }}")
c("{{ lipsum(html=false, n=1, min=3, max=4)|wordcount }}")
c("{{ (lipsum(1, false)|wordcount >= 20) and (lipsum(1, false)|wordcount < 100) }}")
c("{{ lipsum(1, false, 6, 5) }}")
c("{{ lipsum(1, false, 20, 20)|wordcount }}")
c("{{ dict(a=1, b=2) }}"); c("{% set ns = namespace(x=1) %}{% set ns.x = 2 %}{{ ns.x }}")
# ---- filter arguments ----
for t in ["{{ 2.7|round(0, 'floor') }}", "{{ 2.1|round(method='ceil') }}", "{{ 2.12|round(1, 'ceil') }}",
          "{{ 2.5|round(method='common') }}", "{{ 2.5|round(0, 'bad') }}", "{{ -2.5|round(0, 'floor') }}",
          "{{ -2.1|round(method='ceil') }}", "{{ 5|round(0, 'floor') }}", "{{ 5|round(method='ceil') }}",
          "{{ 2.675|round(2, 'floor') }}", "{{ 1.005|round(2, 'ceil') }}", "{{ 123.456|round(-1) }}",
          "{{ 123.456|round(-1, 'floor') }}", "{{ 155|round(-1) }}", "{{ 2.5|round(precision=0) }}",
          "{{ 'x'|round }}", "{{ none|round }}", "{{ '2.5'|round }}"]:
    c(t)
xs = [{"x": 1, "y": "b"}, {"x": 3, "y": "A"}, {"x": 2, "y": "c"}]
for t in ["{{ xs|sum(attribute='x') }}", "{{ xs|sum(attribute='x', start=10) }}", "{{ xs|sum('x') }}",
          "{{ xs|join(',', attribute='x') }}", "{{ xs|join(attribute='y') }}", "{{ xs|join(d=',', attribute='x') }}",
          "{{ xs|min(attribute='x') }}", "{{ xs|max(attribute='x') }}", "{{ xs|min(attribute='y') }}",
          "{{ xs|max(attribute='y') }}", "{{ xs|min(attribute='y', case_sensitive=True) }}",
          "{{ xs|sum(attribute='missing') }}", "{{ xs|map(attribute='x')|sum }}", "{{ [1.5, 2]|sum }}",
          "{{ [[1],[2]]|sum(start=[]) }}", "{{ ['a','b']|sum }}", "{{ xs|sort(attribute='y')|map(attribute='x')|list }}",
          "{{ xs|min(attribute='x')|tojson }}"]:
    c(t, xs=xs)
c("{{ [1.5, 2]|sum }}"); c("{{ [[1],[2]]|sum(start=[]) }}"); c("{{ ['a','b']|sum }}")
c("{{ ys|sum(attribute='a.b') }}", ys=[{"a": {"b": 1}}, {"a": {"b": 2}}])
c("{{ ys|join('-', attribute='0') }}", ys=[["p", 1], ["q", 2]])
for t in ["{{ '0x1f'|int(base=16) }}", "{{ 'ff'|int(base=16) }}", "{{ 'FF'|int(0, 16) }}", "{{ 'zz'|int(0, 16) }}",
          "{{ '0x1f'|int(0, 0) }}", "{{ '0b101'|int(base=2) }}", "{{ '0o17'|int(base=8) }}", "{{ '17'|int(base=8) }}",
          "{{ '0x1f'|int }}", "{{ 'z'|int(base=36) }}", "{{ 255|int(base=16) }}", "{{ '1_000'|int }}",
          "{{ '-ff'|int(base=16) }}", "{{ ' ff '|int(base=16) }}", "{{ '1.5'|int(base=16) }}", "{{ 'ff'|int(7, 16) }}"]:
    c(t)
for t in ["{{ 'aaa'|replace('a', 'b', 2) }}", "{{ 'aaa'|replace('a', 'b', 0) }}", "{{ 'aaa'|replace('a', 'b', -1) }}",
          "{{ 'aaa'|replace('a', 'b', count=1) }}", "{{ 'abc'|replace('', '-') }}", "{{ 'abc'|replace('', '-', 2) }}",
          "{{ 'aaa'|replace('a', 'b') }}", "{{ 5|replace('5', 'x') }}", "{{ 'a.b'.replace('.', '', 1) }}"]:
    c(t)
# ---- number rules ----
for t in ["{{ 'alpha'|int }}", "{{ 'alpha'|float }}", "{{ 'alpha'|int(7) }}", "{{ 'alpha'|float(1.5) }}",
          "{{ 'alpha'|int(default=3) }}", "{{ '3.7'|int }}", "{{ ' 42 '|int }}", "{{ ' 4.5 '|float }}", "{{ '4'|float }}",
          "{{ '1e3'|int }}", "{{ '1e3'|float }}", "{{ 3.9|int }}", "{{ -3.9|int }}", "{{ true|int }}", "{{ none|int }}",
          "{{ none|float }}", "{{ ''|int }}", "{{ ''|float }}", "{{ 'inf'|float }}", "{{ '-inf'|float }}",
          "{{ 'nan'|float }}", "{{ 'NaN'|float }}", "{{ 'Infinity'|float }}", "{{ 'inf'|int }}", "{{ 'nan'|int }}",
          "{{ '1_000.5'|float }}", "{{ '+5'|int }}", "{{ '٣'|int }}", "{{ [1]|int }}", "{{ 1e20|int }}",
          "{{ '99999999999999999999'|int }}", "{{ 5|float }}", "x{{ 5|float }}", "{{ '0.1'|float + '0.2'|float }}",
          "{{ 2 ** -1 }}", "{{ 2 ** 0.5 }}", "{{ 2 ** 64 }}", "{{ 2 ** 100 }}", "{{ 0 ** -1 }}", "{{ (-8) ** 0.5 }}",
          "{{ 2 ** -1 ** 2 }}", "{{ -2 ** 2 }}", "{{ 10 ** 20 }}", "{{ 2.0 ** 3 }}", "{{ n ** -2 }}",
          "{{ 2.5|round }}", "{{ 3.5|round }}", "{{ 0.5|round }}", "{{ -2.5|round }}", "{{ 1.5|round }}",
          "{{ 2.675|round(2) }}", "{{ 1.005|round(2) }}", "{{ 0.125|round(2) }}", "{{ 5|round }}", "{{ 5|round(2) }}",
          "x{{ 5|round }}", "{{ 2.5|round|int }}", "{{ 1e20|round }}", "{{ 0.1|round(20) }}",
          "{{ 7 // -2 }}", "{{ 2 % -3 }}", "{{ -7 // 2 }}", "{{ -7 % 2 }}", "{{ 7.5 // 2 }}", "{{ 7.5 % 2 }}",
          "{{ -7.5 // 2 }}", "{{ -7.5 % 2 }}", "{{ 7 % -2.5 }}", "{{ 7 // 2.0 }}", "{{ -1 % 5 }}", "{{ 5 % 5 }}",
          "{{ -0.0 % 5 }}", "{{ 1e308 * 10 }}", "{{ 9007199254740993 }}", "{{ 9007199254740993 + 0.0 }}",
          "{{ 2 ** 63 - 1 + 1 }}", "{{ 3 / 2 * 2 }}", "{{ 10 / 4 }}", "{{ 7 / 7 }}", "{{ 'ab' * 3 }}", "{{ [1] * 3 }}",
          "{{ 3 * 'ab' }}", "{{ 'a' + 1 }}", "{{ 'a' ~ 1 }}", "{{ 1 + true }}", "{{ true + true }}", "{{ 1 == 1.0 }}",
          "{{ 0.1 + 0.2 == 0.3 }}", "{{ (5|float) is integer }}", "{{ 5.0 is float }}", "{{ 2 ** 0 }}",
          "{{ 10 // 3 }}", "{{ 10 % 3 }}", "{{ 1e16|int }}", "{{ -0.0 }}", "{{ 0.0 == -0.0 }}", "{{ 5|abs }}", "{{ -5.5|abs }}"]:
    c(t, n=3) if "n ** " in t else c(t)
for nv in [3, 3.5, -2, 0, "a", None, True, [1]]:
    c("{{ -n }}", n=nv)
c("{{ -context.n }}", context={"n": 3}); c("{{ +n }}", n=3); c("{{ +n }}", n="a"); c("{{ - -n }}", n=3)
c("{{ -n + 1 }}", n=3); c("{{ 1 - -n }}", n=3); c("{{ -(n) }}", n=3); c("{{ -n|abs }}", n=3)
c("{{ -missing }}"); c("{{ -n.x }}", n={"x": 4})
c("{{ n // -2 }}", n=7); c("{{ n % -3 }}", n=2); c("{{ n // 2 }}", n=-7); c("{{ n % 2 }}", n=-7)
# ---- title / capitalize ----
for s in ["x_y it's", "hello WORLD", "a-b c", "o'neil mc-donald", "1st place", "ÉCOLE été", "tab\there", "a.b,c(d)e", "  x  "]:
    c("{{ s|title }}", s=s)
for s in ["hELLO wORLD", "", "ß"]:
    c("{{ s|capitalize }}", s=s)
# ---- max/min/sort/unique case ----
for t in ["{{ ['b','A','c']|max }}", "{{ ['a','B']|max }}", "{{ ['b','A','c']|min }}", "{{ ['a','B']|min }}",
          "{{ ['a','B']|max(case_sensitive=True) }}", "{{ ['a','A']|max }}", "{{ ['A','a']|max }}", "{{ []|max }}",
          "x{{ []|min }}y", "{{ [1, 3.5, 2]|max }}", "{{ [1, 'a']|max }}", "{{ ['b','A','c']|sort }}",
          "{{ ['b','A','c']|sort(case_sensitive=True) }}", "{{ ['a','A','b']|unique|list }}", "{{ ['a','A','b']|unique(case_sensitive=True)|list }}",
          "{{ 'bAc'|max }}", "{{ ['B','a','C']|sort(reverse=True) }}", "{{ {'b':1,'A':2}|dictsort }}",
          "{{ {'b':1,'A':2}|dictsort(true) }}", "{{ ['ä','b','Z']|max }}", "{{ 'ä' > 'b' }}"]:
    c(t)
# ---- tojson / finalize ----
d = {"b": 1, "a": [1, 2]}
for t in ["a{{ d|tojson }}b", "{{ d|tojson }}", "a{{ d }}b", "{{ d }}", "{{ d|tojson(2) }}", "a{{ d|tojson(indent=2) }}b",
          "{{ d|tojson|tojson }}", "x{{ d.a }}", "x{{ d|list }}", "x{{ d.items()|list }}", "x{{ d|string }}"]:
    c(t, d=d)
c("x{{ s|tojson }}", s="<a href='x'>&</a>"); c("x{{ 'é'|tojson }}"); c("x{{ [1.0, 1e20, 0.1]|tojson }}")
c("x{{ [1.0, 1e20, 0.1] }}"); c("x{{ none }}"); c("{{ none }}"); c("x{{ true }}"); c("{{ true }}")
c("x{{ (1, 2) }}"); c("{{ (1, 2) }}"); c("x{{ [none, true, 'a'] }}"); c("x{{ {'k': none} }}")
c("x{{ [(1,2)] }}"); c("x{{ range(3) }}"); c("x{{ range(3)|list }}"); c("x{{ [1,2]|reverse|list }}"); c("x{{ 'abc'|reverse }}"); c("x{{ 'ab'|list }}")
c("x{{ 'a\"b' }}"); c("x{{ ['a\"b', 'é'] }}"); c("x{{ {1: 2} }}"); c("x{{ d|dictsort }}", d=d)
c("x{{ {'b':1}|items|list }}"); c("{{ [1,2]|map('string')|list }}"); c("x{{ 'a'|list|join }}")
# ---- floats in text ----
for t in ["{{ 0.00000015 }}", "x{{ 0.00000015 }}", "x{{ 1e20 }}", "x{{ 1.0 }}", "x{{ 1e16 }}", "x{{ 1e15 }}",
          "x{{ 0.1+0.2 }}", "{{ 0.1+0.2 }}", "x{{ 1.5 }}", "x{{ 1e-5 }}", "x{{ 1e-4 }}", "x{{ 0.0001 }}",
          "x{{ 123456789012345678.0 }}", "x{{ 3.0 }}", "x{{ -0.0 }}", "x{{ 1e300*1e10 }}", "x{{ -1e300*1e10 }}",
          "x{{ (1e300*1e10) - (1e300*1e10) }}", "{{ 1e300*1e10 }}", "x{{ 2/3 }}", "x{{ 1.0|string }}", "x{{ 1e22 }}",
          "x{{ 12345678901234567890.0 }}", "x{{ 1.7976931348623157e308 }}", "x{{ 5e-324 }}", "x{{ 100.0 }}",
          "x{{ 1e100 }}", "x{{ 0.1 * 3 }}", "x{{ 1/3 }}", "x{{ 1.23456789e-7 }}", "x{{ '%.2f'|format(1.005) }}",
          "x{{ '%s'|format(1e20) }}", "x{{ '%d'|format(3.7) }}", "x{{ [0.00000015] }}"]:
    c(t)
c("x{{ v }}", v=1e-7); c("x{{ v }}", v=1.5e-07); c("x{{ v }}", v=2.0)
# ---- reference bugs / native round-trip ----
c("{{ 'NaN' }}"); c("{{ 'Infinity' }}"); c("{{ '-Infinity' }}"); c("{{ s }}", s="NaN"); c("{{ '01' }}"); c("{{ '1.0' }}")
c("{{ 'true' }}"); c("{{ 'null' }}"); c("{{ ' 5 ' }}"); c("{{ '\"q\"' }}")
c("context.xs", context={"xs": [1, 2]}); c(" context.xs ", context={"xs": [1, 2]}); c("context.missing.x", context={})
c("{{ context.xs }}", context={"xs": [1, 2]}); c("{{ context.xs }}", context={"xs": []}); c("{{ item.id }}", item={"id": 7})
c("{{ item.id }}", item={"id": "7"}); c("{{ item.k }}", item={"k": 1.0})

# ---- stringification of values inside other operations (join, ~, string) ----
for t in ["{{ [1, none, true, 1.5e-7, 'a']|join(',') }}", "{{ 'a' ~ none }}", "{{ 'a' ~ true }}", "{{ 'a' ~ 1e20 }}",
          "{{ 'a' ~ 1.0 }}", "{{ 'a' ~ [1, 'b'] }}", "{{ 'a' ~ {'k': 'v'} }}", "{{ [1, 'b']|string }}", "{{ none|string }}",
          "{{ true|string }}", "{{ 1e20|string }}", "{{ 'a%sb'|format(none) }}", "{{ [[1, 2], [3]]|join(';') }}",
          "{{ {'b': 1, 'a': 2}|join(',') }}", "{{ 1|string ~ 2 }}", "{{ (0.1 + 0.2)|string }}"]:
    c(t)
for t in ["{{ 1 // 0.1 }}", "{{ 1 % 0.1 }}", "{{ -1 // 0.1 }}", "{{ 0.7 // 0.1 }}", "{{ -7 % 0.5 }}", "{{ 5 % -0.0 }}",
          "{{ -6 // 3 }}", "{{ -6 % 3 }}", "{{ 6 % -3 }}", "{{ -170141183460469231731687303715884105728 // -1 }}"]:
    c(t)
c("{{ xs|join(',') }}", xs=[1, None, True, 2.5]); c("x{{ xs }}", xs=[1, None, True, 2.5, "é"]); c("{{ 'v=' ~ v }}", v=1e-7)

# ---- undefined operands (a context key a state has not set yet) ----
for t in ["{{ context.r | length }}", "{{ context.r | count }}", "{{ context.r | sum }}", "{{ context.r | float }}",
          "{{ context.r | int }}", "{{ context.r[1:] }}", "{{ context.r[:2] }}", "{{ context.r[0] }}",
          "{{ context.r <= context.r }}", "{{ context.r > 1 }}", "{{ context.r == context.r }}", "{{ context.r != 1 }}",
          "{{ context.r | list }}", "{{ context.r | first }}", "{{ context.r | last }}", "{{ context.r | round }}",
          "{{ context.r | abs }}", "{{ context.r | string }}", "{{ context.r | upper }}", "{{ context.r ~ 'a' }}",
          "{{ context.r + 1 }}", "{{ context.r * 2 }}", "{{ context.r // 7 }}", "{{ context.r % 5 }}", "{{ -context.r }}",
          "{{ context.r | sort }}", "{{ context.r | join(',') }}", "{{ context.r | reverse | list }}",
          "{{ context.r | unique | list }}", "{{ context.r | select('odd') | list }}", "{{ context.r | map('upper') | list }}",
          "{{ context.r.upper() }}", "{{ context.r.split('-') }}", "{{ context.r | replace('a', 'b') }}",
          "{{ context.r | max }}", "{{ context.r | min }}", "{{ ([] | max) + 1 }}", "{{ ([] | min) > 3 }}",
          "{{ context.r in [1] }}", "{{ 1 in context.r }}", "{{ context.r | trim }}", "{{ context.r | title }}",
          "{{ context.r | capitalize }}", "{{ context.r | lower }}", "{{ '%s' | format(context.r) }}",
          "{{ context.r is even }}", "{{ not context.r }}", "{{ context.r if context.r else 2 }}",
          "{% for a in context.r %}{{ a }}{% endfor %}", "{{ range(context.r % 5) | list }}",
          "{{ (context.r | float) | round | int }}", "{{ context.r and 1 }}", "{{ context.r or 3 }}",
          "{{ context.r | default(4) }}", "{{ context.r | tojson }}", "{{ context.r | dictsort }}",
          "{{ context.r | batch(2) | list }}", "{{ context.r.x }}", "{{ context.r | e }}",
          "{{ context.r | wordcount }}", "{{ context.r | center(5) }}", "{{ context.r | indent }}",
          "{{ context.r | items | list }}", "{{ context.r | selectattr('a') | list }}", "{{ context.r | map(attribute='a') | list }}",
          "{{ context.r | groupby('a') | list }}", "{{ context.r | truncate(3) }}", "{{ context.r | striptags }}",
          "{{ context.r | urlencode }}", "{{ context.r | pprint }}", "{{ context.r | safe }}", "{{ context.r | attr('a') }}",
          "{{ context.r is defined }}", "{{ context.r is none }}", "{{ context.r is number }}", "{{ context.r is string }}",
          "{{ context.r is sequence }}", "{{ context.r is iterable }}", "{{ context.r is mapping }}",
          "{{ [context.r] }}", "{{ {'a': context.r} }}", "{{ context.r(1) }}", "{{ context.r ** 2 }}", "{{ context.r / 2 }}"]:
    c(t, context={})

# ---- null operands (a bare path to a missing key gives None) ----
for t in ["{{ context.r | list }}", "{{ context.r | length }}", "{{ context.r | sum }}", "{{ context.r | sort }}",
          "{{ context.r | join(',') }}", "{{ context.r | first }}", "{{ context.r | last }}", "{{ context.r | reverse }}",
          "{{ context.r | unique | list }}", "{{ context.r | select('odd') | list }}", "{{ context.r | map('upper') | list }}",
          "{% for a in context.r %}{{ a }}{% endfor %}", "{{ context.r | max }}", "{{ context.r | min }}",
          "{{ context.r | upper }}", "{{ context.r | lower }}", "{{ context.r | title }}", "{{ context.r | trim }}",
          "{{ context.r | capitalize }}", "{{ context.r | replace('N', 'x') }}", "{{ context.r | string }}",
          "{{ context.r ~ 'a' }}", "{{ context.r | int }}", "{{ context.r | float }}", "{{ context.r | abs }}",
          "{{ context.r | round }}", "{{ context.r[1:] }}", "{{ context.r[0] }}", "{{ context.r | count }}",
          "{{ context.r | batch(2) | list }}", "{{ context.r | items | list }}", "{{ context.r | dictsort }}",
          "{{ context.r | wordcount }}", "{{ context.r | center(6) }}", "{{ context.r | truncate(3) }}",
          "{{ context.r in [1] }}", "{{ 1 in context.r }}", "{{ context.r is even }}", "{{ context.r | tojson }}",
          "{{ context.r.upper() }}", "{{ context.r | default(3) }}", "{{ context.r | e }}", "{{ context.r | indent }}",
          "{{ context.r | striptags }}", "{{ context.r | urlencode }}", "{{ context.r | pprint }}", "{{ context.r | attr('a') }}",
          "{{ context.r | selectattr('a') | list }}", "{{ context.r | groupby('a') | list }}", "{{ range(context.r) | list }}"]:
    c(t, context={"r": None})

facts = []
def jsonable(v):
    try:
        json.dumps(v, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False

for t, v in C:
    rec = {"template": t, "vars": copy.deepcopy(v)}
    try:
        rendered, native = render_template(t, v)
        if rendered is not None:
            rec["result"] = rendered
        else:
            rec["not_a_template"] = True
        if jsonable(native):
            rec["native"] = native
        else:
            rec["native_repr"] = repr(native)
        rec["native_type"] = type(native).__name__
    except Exception as e:  # noqa
        rec["error"] = f"{type(e).__name__}: {e}"
    facts.append(rec)

import os
here = os.path.dirname(os.path.abspath(__file__))
keep = ("template", "vars", "error", "result", "native", "native_repr", "not_a_template")
with open(os.path.join(here, "jinja2_facts.json"), "w") as f:
    lines = [json.dumps({k: r[k] for k in keep if k in r}, ensure_ascii=False) for r in facts]
    f.write("[\n" + ",\n".join(lines) + "\n]\n")
print(len(facts), "cases;", sum("error" in r for r in facts), "errors; Jinja2", jinja2.__version__)
