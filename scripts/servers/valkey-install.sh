#!/usr/bin/env bash
# Installs Valkey 8.0 once into the cache outside the clone and prints its bin directory
# (valkey-server, valkey-sentinel, valkey-cli) on stdout:
#   valkey-install.sh   -> e.g. ~/.cache/idem/valkey-8.0.1/bin
#
# Debian bookworm's main suite has no Valkey; its bookworm-backports suite has valkey-server,
# valkey-sentinel and valkey-tools 8.0.x. Nothing is installed into the system: the .debs are
# fetched with `apt-get download` under a PRIVATE apt configuration (its own sources file, package
# lists and cache, in a temporary directory) and unpacked with `dpkg-deb -x`. The mirror is the one
# the machine already uses: read at run time from its apt sources (deb822 *.sources or a classic
# sources.list line for bookworm); it is written nowhere else.
# The binaries need the same shared libraries as Debian's redis-tools (jemalloc, lzf, ssl, systemd,
# atomic), which redis.sh installs for Redis 7.0 anyway; a library ldd still finds missing is
# fetched the same way (from bookworm) and unpacked next to the binaries, which then run through
# small wrappers setting LD_LIBRARY_PATH.
set -euo pipefail

VALKEY_SERIES=8.0          # apt pin: valkey-*=8.0.*
SUITE=bookworm-backports
PACKAGES=(valkey-server valkey-sentinel valkey-tools)

log() { echo "valkey-install.sh: $*" >&2; }
die() { log "$*"; exit 1; }

cache="${IDEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/idem}"
mkdir -p "$cache"

installed() { # the newest complete install of the series, if any
  local d
  d=$(ls -d "$cache/valkey-$VALKEY_SERIES".* 2>/dev/null | grep -v '\.tmp' | sort -V | tail -n 1) || true
  [ -n "$d" ] && [ -x "$d/bin/valkey-server" ] && [ -f "$d/.complete" ] && echo "$d/bin"
}

if bin=$(installed); then echo "$bin"; exit 0; fi

# One installer at a time (two test runs may start together); the second finds the first's result.
exec 9> "$cache/valkey-install.lock"
flock 9
if bin=$(installed); then echo "$bin"; exit 0; fi

command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || die "apt-get and dpkg-deb are needed to fetch Valkey"

# --- the machine's Debian mirror and keyring for bookworm, from its own apt sources ---
mirror="" keyring=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -r "$f" ] || continue
  # deb822: stanzas separated by blank lines; first stanza of Types deb whose Suites include bookworm.
  line=$(awk '
    function flush() {
      if (types ~ / deb / && suites ~ / bookworm / && enabled !~ /^no$/ && uris != "") { split(uris, u, " "); print u[1] "\t" signed; found = 1; exit }
      types = suites = uris = signed = ""; enabled = "yes"
    }
    BEGIN { enabled = "yes" }
    /^[ \t]*#/ { next }
    /^[ \t]*$/ { flush(); next }
    {
      key = tolower($1); val = $0; sub(/^[^:]*:[ \t]*/, "", val)
      if (key == "types:") types = " " val " "
      else if (key == "suites:") suites = " " val " "
      else if (key == "uris:") uris = val
      else if (key == "signed-by:") signed = val
      else if (key == "enabled:") enabled = tolower(val)
    }
    END { if (!found) flush() }' "$f") || true
  if [ -n "$line" ]; then
    mirror=${line%%$'\t'*}; keyring=${line#*$'\t'}
    break
  fi
done
if [ -z "$mirror" ]; then
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    # deb [options] URI bookworm components...
    line=$(awk '$1 == "deb" {
        opts = ""; i = 2
        if ($2 ~ /^\[/) { while (i <= NF) { opts = opts " " $i; if ($i ~ /\]$/) { i++; break } i++ } }
        if ($(i + 1) == "bookworm") { signed = ""; if (match(opts, /signed-by=[^] ]+/)) signed = substr(opts, RSTART + 10, RLENGTH - 10); print $i "\t" signed; exit }
      }' "$f") || true
    if [ -n "$line" ]; then mirror=${line%%$'\t'*}; keyring=${line#*$'\t'}; break; fi
  done
fi
[ -n "$mirror" ] || die "no 'bookworm' entry in the machine's apt sources to take the Debian mirror from"
# An inline key (a multi-line Signed-By) is not a path: leave it to the machine's trusted keys then.
case "$keyring" in /*) [ -r "$keyring" ] || keyring="" ;; *) keyring="" ;; esac

work=$(mktemp -d "${TMPDIR:-/tmp}/idem-valkey-apt.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$work/root"

write_sources() { # suites...
  {
    echo "Types: deb"
    echo "URIs: $mirror"
    echo "Suites: $*"
    echo "Components: main"
    [ -n "$keyring" ] && echo "Signed-By: $keyring"
  } > "$work/sources.sources"
}
# Its own sources, lists and cache; the machine's other settings (proxy, snapshot dates) still apply,
# but none of its update or dpkg hooks run (they act on the system's cache).
cat > "$work/apt.conf" <<EOF
Dir::Etc::SourceList "$work/sources.sources";
Dir::Etc::SourceParts "/dev/null";
Dir::State::Lists "$work/lists";
Dir::Cache "$work/cache";
#clear APT::Update::Pre-Invoke;
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
#clear DPkg::Pre-Invoke;
#clear DPkg::Post-Invoke;
Acquire::Languages "none";
Acquire::IndexTargets::deb::DEP-11::DefaultEnabled "false";
APT::Sandbox::User "root";
EOF
apt_private() { # apt-get args... (quiet; its log kept for a failure message)
  apt-get -c "$work/apt.conf" -qq "$@" >> "$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; return 1; }
}

log "fetching Valkey $VALKEY_SERIES.x from $SUITE (private apt state, nothing installed system-wide)"
write_sources "$SUITE"
apt_private update || die "apt-get update of $SUITE failed"
pins=(); for p in "${PACKAGES[@]}"; do pins+=("$p=$VALKEY_SERIES.*"); done
(cd "$work/debs" && apt_private download "${pins[@]}") || die "apt-get download ${pins[*]} failed"
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
version=$("$work/root/usr/bin/valkey-server" --version 2>/dev/null | sed -n 's/^Valkey server v=\([0-9.]*\) .*/\1/p') || true
if [ -z "$version" ]; then
  # Perhaps a shared library is missing: the version is read again once it is there.
  version=$(dpkg-deb -f "$(ls "$work"/debs/valkey-server_*.deb)" Version | sed 's/[+~-].*//')
fi
case "$version" in "$VALKEY_SERIES".*) ;; *) die "expected Valkey $VALKEY_SERIES.x, got '${version:-nothing}'" ;; esac

prefix="$cache/valkey-$version"
missing_libs() { ldd "$work/root/usr/bin/valkey-server" "$work/root/usr/bin/valkey-cli" 2>/dev/null | awk '/not found/ { print $1 }' | sort -u; }
libdir=""
if [ -n "$(missing_libs)" ]; then
  log "libraries missing on this machine: $(missing_libs | paste -sd' '); fetching them from bookworm"
  # The packages valkey-tools depends on that dpkg does not know as installed.
  deps=$(dpkg-deb -f "$(ls "$work"/debs/valkey-tools_*.deb)" Depends | tr ',' '\n' | sed 's/^ *//;s/[ (|].*//' | grep '^lib' || true)
  need=()
  for d in $deps; do
    dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q 'install ok installed' || need+=("$d")
  done
  [ "${#need[@]}" -gt 0 ] || die "libraries missing ($(missing_libs | paste -sd' ')) but every dependency is installed"
  write_sources bookworm "$SUITE"
  apt_private update || die "apt-get update of bookworm failed"
  (cd "$work/debs" && apt_private download "${need[@]}") || die "apt-get download ${need[*]} failed"
  for d in "${need[@]}"; do dpkg-deb -x "$(ls "$work"/debs/"${d}"_*.deb | head -n 1)" "$work/root"; done
  libdir="$prefix/lib"
fi

# The final layout: usr/ as unpacked, lib/ with any fetched library, bin/ with what redis.sh runs.
tmp="$prefix.tmp.$$"
rm -rf "$tmp"; mkdir -p "$tmp/bin"
mv "$work/root/usr" "$tmp/usr"
if [ -n "$libdir" ]; then
  mkdir -p "$tmp/lib"
  for l in "$tmp"/usr/lib/x86_64-linux-gnu "$work"/root/lib/x86_64-linux-gnu; do [ -d "$l" ] && cp -a "$l"/. "$tmp/lib/"; done
  for b in valkey-server valkey-sentinel valkey-cli; do
    # exec -a keeps the name: valkey-server and valkey-sentinel are one binary that reads it.
    printf '#!/usr/bin/env bash\nLD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec -a "%s" "%s" "$@"\n' \
      "$libdir" "$b" "$prefix/usr/bin/$b" > "$tmp/bin/$b"
    chmod +x "$tmp/bin/$b"
  done
else
  for b in valkey-server valkey-sentinel valkey-cli; do ln -s "../usr/bin/$b" "$tmp/bin/$b"; done
fi
[ -e "$tmp/usr/bin/valkey-sentinel" ] || ln -s valkey-server "$tmp/usr/bin/valkey-sentinel"
rm -rf "$prefix"; mv "$tmp" "$prefix"
got=$("$prefix/bin/valkey-server" --version) || die "the installed valkey-server does not run (ldd $prefix/usr/bin/valkey-server)"
"$prefix/bin/valkey-cli" --version >/dev/null || die "the installed valkey-cli does not run"
case "$got" in "Valkey server v=$VALKEY_SERIES."*) ;; *) die "valkey-server --version says: $got" ;; esac
touch "$prefix/.complete"
log "installed ${got%% sha=*} into $prefix"
echo "$prefix/bin"
