# Builds BoringSSL from the Debian source tree into static, position-independent,
# hidden-visibility libraries: bssl_crypto and bssl_ssl.
#
# The tree is the Debian source package android-platform-external-boringssl,
# fetched by scripts/setup.sh, or any BoringSSL tree with android-sources.cmake
# given as -DBORINGSSL_SOURCE_DIR=... Only the x86_64 Linux assembly is used;
# other architectures build with OPENSSL_NO_ASM.

set(BORINGSSL_SOURCE_DIR "${CMAKE_SOURCE_DIR}/build/_deps/boringssl-src"
    CACHE PATH "BoringSSL tree with android-sources.cmake")
get_filename_component(BORINGSSL_SOURCE_DIR "${BORINGSSL_SOURCE_DIR}" REALPATH)
if(NOT EXISTS "${BORINGSSL_SOURCE_DIR}/android-sources.cmake")
  message(FATAL_ERROR
    "BoringSSL not found at ${BORINGSSL_SOURCE_DIR}: run scripts/setup.sh "
    "(make does it) or pass -DBORINGSSL_SOURCE_DIR=/path/to/tree")
endif()

set(BORINGSSL_ROOT "${BORINGSSL_SOURCE_DIR}/")
include("${BORINGSSL_SOURCE_DIR}/android-sources.cmake")

file(READ "${BORINGSSL_SOURCE_DIR}/BORINGSSL_REVISION" BORINGSSL_REVISION)
string(STRIP "${BORINGSSL_REVISION}" BORINGSSL_REVISION)

if(CMAKE_SYSTEM_PROCESSOR STREQUAL "x86_64" AND CMAKE_SYSTEM_NAME STREQUAL "Linux")
  enable_language(ASM)
  set(bssl_asm ${crypto_sources_linux_x86_64})
  set(bssl_asm_defs "")
else()
  set(bssl_asm "")
  set(bssl_asm_defs OPENSSL_NO_ASM)
endif()

# BoringSSL is not ours: no -Werror, no sanitizers (one exception below), and
# none of its symbols visible outside libtlsshim.so. -O3 as in BoringSSL's own
# release builds: its portable C field arithmetic (X25519's fiat code) is
# about 30% faster than at -O2, which is a third of the CPU of a full
# handshake.
set(bssl_c_flags -O3 -g -fPIC -fvisibility=hidden -fno-strict-aliasing
    -Wno-deprecated-declarations)
set(bssl_cxx_flags ${bssl_c_flags} -fvisibility-inlines-hidden -fno-exceptions
    -fno-rtti)
# The exception is ThreadSanitizer: it must see BoringSSL's atomics (reference
# counts, CRYPTO_once) or it reports the free of an SSL_SESSION that another
# thread released a moment earlier as a race. AddressSanitizer needs no such
# help, so only the TSan build instruments BoringSSL.
if(TLSSHIM_SANITIZE MATCHES "thread")
  list(APPEND bssl_c_flags -fsanitize=thread)
  list(APPEND bssl_cxx_flags -fsanitize=thread)
endif()

add_library(bssl_crypto STATIC ${crypto_sources} ${bssl_asm})
add_library(bssl_ssl STATIC ${ssl_sources})
foreach(t bssl_crypto bssl_ssl)
  set_target_properties(${t} PROPERTIES POSITION_INDEPENDENT_CODE ON
    C_VISIBILITY_PRESET hidden CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON CXX_STANDARD 14 C_STANDARD 11)
  target_include_directories(${t} SYSTEM PUBLIC "${BORINGSSL_SOURCE_DIR}/src/include")
  target_compile_definitions(${t} PRIVATE BORINGSSL_IMPLEMENTATION
    _XOPEN_SOURCE=700 ${bssl_asm_defs})
  target_compile_definitions(${t} PUBLIC ${bssl_asm_defs})
  target_compile_options(${t} PRIVATE
    $<$<COMPILE_LANGUAGE:C>:${bssl_c_flags}>
    $<$<COMPILE_LANGUAGE:CXX>:${bssl_cxx_flags}>)
endforeach()
target_link_libraries(bssl_ssl PUBLIC bssl_crypto)
