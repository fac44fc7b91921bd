# Debian packages kiln-agent and kiln-api (CPack DEB, one component each).
# Included at the end of the top-level CMakeLists.txt; build them with
#   cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build
#   (cd build && cpack -G DEB)        -> build/kiln-agent_<ver>_<arch>.deb, kiln-api_...
# Layout: binaries in /usr/bin, units in /lib/systemd/system, default config in
# /etc/kiln (conffiles), migrations in /usr/share/kiln/sql, docs in /usr/share/doc/<pkg>.
set(KILN_DEPLOY_DIR ${CMAKE_CURRENT_LIST_DIR})

# Component-specific install rules (the binaries' own rules have no component and are
# left out of the packages by CPACK_COMPONENTS_ALL below).
install(TARGETS kiln-agent RUNTIME DESTINATION bin COMPONENT agent)
install(TARGETS kiln-api RUNTIME DESTINATION bin COMPONENT api)

install(FILES ${KILN_DEPLOY_DIR}/systemd/kiln-agent.service
        DESTINATION /lib/systemd/system COMPONENT agent)
install(FILES ${KILN_DEPLOY_DIR}/systemd/kiln-api.service ${KILN_DEPLOY_DIR}/systemd/kiln-api.socket
              ${KILN_DEPLOY_DIR}/systemd/kiln-api@.service ${KILN_DEPLOY_DIR}/systemd/kiln-api@.socket
        DESTINATION /lib/systemd/system COMPONENT api)

install(FILES ${KILN_DEPLOY_DIR}/config/agent.conf DESTINATION /etc/kiln
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ COMPONENT agent)
install(FILES ${KILN_DEPLOY_DIR}/config/api.env DESTINATION /etc/kiln
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ COMPONENT api)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/sql/ DESTINATION share/kiln/sql COMPONENT api
        FILES_MATCHING PATTERN "*.sql" PATTERN "*.md")
install(FILES ${KILN_DEPLOY_DIR}/../nginx/kiln.conf DESTINATION share/kiln/nginx COMPONENT api)
foreach(comp agent api)
  install(FILES ${PROJECT_SOURCE_DIR}/docs/operations.md
          DESTINATION share/doc/kiln-${comp} COMPONENT ${comp})
endforeach()
install(PROGRAMS ${KILN_DEPLOY_DIR}/install-agent.sh DESTINATION share/kiln
        RENAME kiln-install-agent COMPONENT agent)

# Maintainer scripts: the shared shell functions are pasted into each script.
file(READ ${KILN_DEPLOY_DIR}/packaging/common.sh KILN_MAINT_COMMON)
foreach(comp agent api)
  set(extra)
  foreach(script postinst prerm postrm)
    configure_file(${KILN_DEPLOY_DIR}/packaging/${comp}/${script}.in
                   ${CMAKE_BINARY_DIR}/deb/${comp}/${script} @ONLY)
    list(APPEND extra ${CMAKE_BINARY_DIR}/deb/${comp}/${script})
  endforeach()
  set(KILN_DEB_EXTRA_${comp} ${extra})
endforeach()
file(WRITE ${CMAKE_BINARY_DIR}/deb/agent/conffiles "/etc/kiln/agent.conf\n")
file(WRITE ${CMAKE_BINARY_DIR}/deb/api/conffiles "/etc/kiln/api.env\n")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME kiln)
set(CPACK_PACKAGE_VENDOR "kiln")
set(CPACK_PACKAGE_CONTACT "kiln maintainers <ops@kiln.invalid>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL agent api)
set(CPACK_COMPONENTS_GROUPING IGNORE)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION mail)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Library Depends come from dpkg-shlibdeps (dpkg-dev) on the built binaries.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://kiln.invalid/")

set(CPACK_DEBIAN_AGENT_PACKAGE_NAME kiln-agent)
set(CPACK_DEBIAN_AGENT_PACKAGE_DEPENDS "adduser, ca-certificates")
set(CPACK_DEBIAN_AGENT_DESCRIPTION "kiln email warmup agent (SMTP sender)
Leases mailboxes from the kiln control plane and sends their warmup mails over
SMTP with io_uring (Linux 6.1 or later recommended). Configure it with
/usr/share/kiln/kiln-install-agent or /etc/kiln/agent.conf.")
set(CPACK_DEBIAN_AGENT_PACKAGE_CONTROL_EXTRA
    "${KILN_DEB_EXTRA_agent};${CMAKE_BINARY_DIR}/deb/agent/conffiles")

set(CPACK_DEBIAN_API_PACKAGE_NAME kiln-api)
set(CPACK_DEBIAN_API_PACKAGE_DEPENDS "adduser, ca-certificates")
set(CPACK_DEBIAN_API_PACKAGE_RECOMMENDS "nginx-light | nginx, postgresql-client")
set(CPACK_DEBIAN_API_PACKAGE_SUGGESTS "postgresql (>= 15), prometheus")
set(CPACK_DEBIAN_API_DESCRIPTION "kiln email warmup control plane (FastCGI)
The kiln-api FastCGI server that runs behind nginx, with its PostgreSQL
migrations, systemd socket units and a production nginx site.")
set(CPACK_DEBIAN_API_PACKAGE_CONTROL_EXTRA
    "${KILN_DEB_EXTRA_api};${CMAKE_BINARY_DIR}/deb/api/conffiles")

include(CPack)
