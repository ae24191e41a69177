#!/usr/bin/env python3
# tests/schema-next.py: the schema of a store one version newer than this
# program's, embedded like the real one, for the migration test.
#
# usage: schema-next.py EMBED.py OUT.c store.sql [migrate-N.sql ...]
#
# The next version is store.sql plus one table; the migration to it adds
# that table.  It is appended to the real migrations, so the test runs
# every real migration and then one more.
import os
import re
import subprocess
import sys
import tempfile

NEXT = 'CREATE TABLE migrated_by_test (note TEXT NOT NULL);\n'


def main():
    if len(sys.argv) < 4:
        sys.exit('usage: schema-next.py EMBED.py OUT.c store.sql [migrate-N.sql ...]')
    embed, out, schema_path = sys.argv[1:4]
    schema = open(schema_path, encoding='utf-8').read()
    m = re.search(r'^-- version: (\d+)\s*$', schema, re.M)
    if not m:
        sys.exit('%s: no "-- version: N" line' % schema_path)
    version = int(m.group(1))
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(out))) as tmp:
        nxt = os.path.join(tmp, 'store.sql')
        with open(nxt, 'w', encoding='utf-8') as f:
            f.write(schema[:m.start()] + '-- version: %d' % (version + 1) + schema[m.end():])
            f.write('\n' + NEXT)
        mig = os.path.join(tmp, 'migrate-%d.sql' % version)
        with open(mig, 'w', encoding='utf-8') as f:
            f.write(NEXT)
        subprocess.run([sys.executable, embed, out, nxt] + sys.argv[4:] + [mig], check=True)


main()
