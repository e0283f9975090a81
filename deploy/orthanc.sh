#!/usr/bin/env bash
# Local Orthanc PACS with its DICOMweb plugin: the city archive studies' WADO-RS URIs point into.
#   deploy/orthanc.sh start | wait | up | stop | status
# Debian packages `orthanc orthanc-dicomweb orthanc-gdcm` (.ci/run installs them); the package's
# own service is not used: `Orthanc CONFIG.json` runs as a process of ours, with its database and
# files under $RADSTREAM_STATE/orthanc (default .state/orthanc), config from deploy/orthanc/.
# RADSTREAM_ORTHANC_HTTP_PORT / RADSTREAM_ORTHANC_DICOM_PORT (8042 / 4242) move the listeners.
# HTTP listens on loopback only (RemoteAccessAllowed false); Orthanc 1.10 binds its DICOM port on
# every interface whatever the config says, so the DICOM listener only accepts associations that
# call our AE title from a configured modality, and none is configured (docs/security.md).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
state=${RADSTREAM_STATE:-$root/.state}
http_port=${RADSTREAM_ORTHANC_HTTP_PORT:-8042}
dicom_port=${RADSTREAM_ORTHANC_DICOM_PORT:-4242}
plugin=${RADSTREAM_ORTHANC_DICOMWEB:-/usr/share/orthanc/plugins/libOrthancDicomWeb.so}
gdcm=${RADSTREAM_ORTHANC_GDCM:-/usr/share/orthanc/plugins/libOrthancGdcm.so}
dir=$state/orthanc
pidfile=$dir/orthanc.pid
log=$dir/orthanc.log
conf=$dir/orthanc.json

name=orthanc
# shellcheck source=deploy/lib.sh
. "$here/lib.sh"

start() {
  if running; then echo "orthanc: already running (pid $(cat "$pidfile"))"; return 0; fi
  command -v Orthanc >/dev/null || { echo "orthanc: Orthanc missing (apt-get install orthanc orthanc-dicomweb orthanc-gdcm)" >&2; exit 1; }
  [ -f "$plugin" ] || { echo "orthanc: DICOMweb plugin $plugin missing (apt-get install orthanc-dicomweb)" >&2; exit 1; }
  # GDCM decodes what the archive holds compressed (JPEG 2000, JPEG-LS) when the worker asks
  # for Explicit VR Little Endian; without it Orthanc still serves uncompressed instances.
  plugins="\"$plugin\""
  [ -f "$gdcm" ] && plugins="$plugins, \"$gdcm\""
  mkdir -p "$dir/db"
  sed -e "s|@STORAGE@|$dir/db|g" -e "s|@PLUGINS@|$plugins|g" \
      -e "s|@HTTP_PORT@|$http_port|g" -e "s|@DICOM_PORT@|$dicom_port|g" \
      "$here/orthanc/orthanc.json" >"$conf"
  # --no-jobs: nothing left over from a previous run is resumed.
  nohup Orthanc --no-jobs "$conf" >"$log" 2>&1 &
  echo $! >"$pidfile"
  echo "orthanc: started (pid $!, HTTP 127.0.0.1:$http_port, DICOM $dicom_port, log $log)"
}

ready_detail() { echo "DICOMweb at http://127.0.0.1:$http_port/dicom-web"; }
wait_ready() { wait_http "http://127.0.0.1:$http_port/system" "${1:-30}" 0.1; }

case "${1:-}" in
  start) start ;;
  wait) wait_ready "${2:-30}" ;;
  up) start; wait_ready ;;
  stop) stop ;;
  clean) stop; rm -rf "$dir" ;;
  status) status ;;
  *) echo "usage: $0 start|wait|up|stop|clean|status" >&2; exit 2 ;;
esac
