#!/bin/sh
# gen_certs.sh DIR: makes the test PKI (certificates, keys, a CRL) in DIR with
# the openssl command line. Nothing here is committed: tests run this into a
# temporary folder. Idempotent: does nothing when DIR/.done exists.
#
# What it makes (ECDSA P-256 and SHA-256 unless said otherwise):
#   ca.pem/.key            root "tlsshim test CA"
#   ca2.pem/.key           another root "tlsshim other CA"
#   server.pem/.key        by ca: DNS:localhost, DNS:server.test, IP:127.0.0.1,
#                          IP:::1, URI:spiffe://test/ns/default/sa/server; serverAuth
#   client.pem/.key        by ca: URI:spiffe://test/ns/default/sa/client,
#                          DNS:client.test; clientAuth
#   other_client.pem/.key  by ca: URI:spiffe://test/ns/default/sa/other; clientAuth
#   expired.pem/.key       server cert valid 2020-01-01 .. 2021-01-01
#   notyet.pem/.key        server cert valid from 2099-01-01
#   wrongca.pem/.key       server cert by ca2
#   sha1.pem/.key          server cert signed by ca with ecdsa-with-SHA1
#   revoked.pem/.key       server cert by ca, revoked in ca.crl.pem
#   ca.crl.pem             CRL of ca revoking revoked.pem
#   ca.empty.crl.pem       CRL of ca revoking nothing
#   rsa.pem/.key           RSA 2048 server cert
#   ed25519.pem/.key       Ed25519 server cert
#   expiring.pem/.key      server cert valid 10 more days
#   expired_client.pem/.key  the client identity of client.pem, valid 2020-01-01 .. 2021-01-01
#   noeku.pem/.key         SANs of a server but EKU clientAuth only
# Each leaf file holds the leaf alone; the CA is separate.
#
# The exact commands are the ones below (run with `sh -x` to see them
# expanded). `openssl ca` is used for signing because OpenSSL 3.0's x509
# command cannot set arbitrary validity dates.
set -eu

if [ $# -ne 1 ]; then
  echo "usage: gen_certs.sh DIR" >&2
  exit 2
fi
DIR=$1
if [ -f "$DIR/.done" ]; then
  exit 0
fi
mkdir -p "$DIR"
cd "$DIR"
umask 077

SERVER_SAN="DNS:localhost,DNS:server.test,IP:127.0.0.1,IP:::1,URI:spiffe://test/ns/default/sa/server"

# ec_key NAME: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out NAME.key
ec_key() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null
}

# root NAME CN: openssl req -x509 -new -key NAME.key -sha256 -days 3650 -subj "/CN=CN" \
#   -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
root() {
  ec_key "$1"
  openssl req -x509 -new -key "$1.key" -sha256 -days 3650 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" -out "$1.pem"
}

# ca_config CA: a minimal `openssl ca` database for root CA (CA.db/).
ca_config() {
  mkdir -p "$1.db"
  : >"$1.db/index.txt"
  echo 1000 >"$1.db/serial"
  echo 1000 >"$1.db/crlnumber"
  cat >"$1.cnf" <<EOF
[ca]
default_ca = this
[this]
dir = $1.db
database = $1.db/index.txt
serial = $1.db/serial
crlnumber = $1.db/crlnumber
new_certs_dir = $1.db
certificate = $1.pem
private_key = $1.key
default_md = sha256
default_days = 365
default_crl_days = 3650
policy = any
unique_subject = no
email_in_dn = no
[any]
commonName = supplied
EOF
}

# leaf NAME CA EKU SAN [openssl ca options]:
#   openssl req -new -key NAME.key -subj /CN=NAME -out NAME.csr
#   openssl ca -batch -config CA.cnf -notext -in NAME.csr -out NAME.pem -extfile NAME.ext [options]
# with NAME.ext: basicConstraints=critical,CA:FALSE, keyUsage=critical,digitalSignature
# (plus keyEncipherment for RSA), extendedKeyUsage=EKU, subjectAltName=SAN.
leaf() {
  name=$1 ca=$2 eku=$3 san=$4
  shift 4
  if [ ! -f "$name.key" ]; then
    ec_key "$name"
  fi
  openssl req -new -key "$name.key" -subj "/CN=$name" -out "$name.csr"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    echo "subjectAltName=$san"
    echo "authorityKeyIdentifier=keyid"
  } >"$name.ext"
  openssl ca -batch -config "$ca.cnf" -notext -in "$name.csr" -out "$name.pem" \
    -extfile "$name.ext" "$@" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

root ca "tlsshim test CA"
root ca2 "tlsshim other CA"
ca_config ca
ca_config ca2

leaf server ca serverAuth "$SERVER_SAN"
leaf client ca clientAuth "URI:spiffe://test/ns/default/sa/client,DNS:client.test"
leaf other_client ca clientAuth "URI:spiffe://test/ns/default/sa/other"
leaf expired ca serverAuth "$SERVER_SAN" -startdate 20200101000000Z -enddate 20210101000000Z
leaf notyet ca serverAuth "$SERVER_SAN" -startdate 20990101000000Z -enddate 20991231000000Z
leaf wrongca ca2 serverAuth "$SERVER_SAN"
leaf sha1 ca serverAuth "$SERVER_SAN" -md sha1
leaf revoked ca serverAuth "$SERVER_SAN"
leaf noeku ca clientAuth "$SERVER_SAN"
leaf expiring ca serverAuth "$SERVER_SAN" -days 10
leaf expired_client ca clientAuth "URI:spiffe://test/ns/default/sa/client,DNS:client.test" \
  -startdate 20200101000000Z -enddate 20210101000000Z

# openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key 2>/dev/null
leaf rsa ca serverAuth "$SERVER_SAN"
# openssl genpkey -algorithm ED25519 -out ed25519.key
openssl genpkey -algorithm ED25519 -out ed25519.key
leaf ed25519 ca serverAuth "$SERVER_SAN"

# openssl ca -config ca.cnf -gencrl -out ca.empty.crl.pem
openssl ca -config ca.cnf -gencrl -out ca.empty.crl.pem 2>/dev/null
# openssl ca -config ca.cnf -revoke revoked.pem; openssl ca -config ca.cnf -gencrl -out ca.crl.pem
openssl ca -config ca.cnf -revoke revoked.pem 2>/dev/null
openssl ca -config ca.cnf -gencrl -out ca.crl.pem 2>/dev/null

chmod 644 ./*.pem
: >.done
