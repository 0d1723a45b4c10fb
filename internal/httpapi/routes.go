package httpapi

import (
	"net/http"

	"github.com/danielgtaylor/huma/v2"
)

var (
	secUser   = []map[string][]string{{"BearerAuth": {}}, {"ApiKeyAuth": {}}}
	secAdmin  = []map[string][]string{{"AdminApiKey": {}, "BearerAuth": {}}}
	secPublic = []map[string][]string{{}}
)

func op(method, path, id, summary string, status int, sec []map[string][]string, tags ...string) huma.Operation {
	return huma.Operation{Method: method, Path: path, OperationID: id, Summary: summary, DefaultStatus: status, Security: sec, Tags: tags}
}

// routes is the whole HTTP surface at a glance.
func (s *Server) routes(mux *http.ServeMux) {
	a := s.huma
	// Locks: commands.
	huma.Register(a, op(http.MethodPost, "/locks/{id}/CreateLock", "post_CreateLockRoute", "Create new lock", 201, secUser, "Lock", "Command"), s.createLock)
	huma.Register(a, op(http.MethodPost, "/locks/{id}/SetOrganization", "post_SetOrganizationRoute", "Assign the lock to an organization", 200, secUser, "Lock", "Command"), s.setOrganization)
	huma.Register(a, op(http.MethodPost, "/locks/{id}/SetOwner", "post_SetOwnerRoute", "Make a user the owner of the lock", 200, secUser, "Lock", "Command"), s.setOwner)
	huma.Register(a, op(http.MethodPost, "/locks/{id}/AddKey", "post_AddKeyRoute", "Add key to lock (and to its device through the shadow)", 200, secUser, "Lock", "Command", "Device"), s.addKey)
	huma.Register(a, op(http.MethodPost, "/locks/{id}/RemoveKey", "post_RemoveKeyRoute", "Remove key from lock (and from its device)", 200, secUser, "Lock", "Command", "Device"), s.removeKey)
	huma.Register(a, op(http.MethodPost, "/locks/{id}/WriteKey", "post_WriteKeyRoute", "Ask the device to write a key onto a card", 200, secUser, "Lock", "Command", "Device"), s.writeKey)
	huma.Register(a, op(http.MethodPost, "/locks/{id}/OpenLock", "post_OpenLockRoute", "Open lock through the device shadow", 200, secUser, "Lock", "Command", "Device"), s.openLock)
	huma.Register(a, op(http.MethodPost, "/locks/{id}/BulkAddKeys", "post_BulkAddKeysRoute", "Bulk add keys to a lock, one by one, as a durable workflow run", 200, secUser, "Lock", "Command", "Device"), s.bulkAddKeys)
	huma.Register(a, op(http.MethodPost, "/locks/{id}/ChangeLockUuid", "post_ChangeLockUuidRoute", "Change lock UUID (super API key only)", 200, secUser, "Lock", "Command", "Device"), s.changeLockUUID)
	huma.Register(a, op(http.MethodGet, "/locks/{id}/actions/{requestId}", "get_GetLockActionRoute", "A device action's state; ?wait= holds until it finishes (spkey)", 200, secUser, "Lock", "Query", "Device"), s.lockAction)
	// Locks: queries.
	huma.Register(a, op(http.MethodGet, "/locks/{id}/basic-info", "get_GetLockBasicInfoRoute", "Lightweight lock info", 200, secUser, "Lock", "Query"), s.lockBasicInfo)
	huma.Register(a, op(http.MethodGet, "/locks/{id}/details", "get_GetLockDetailsRoute", "Full lock state", 200, secUser, "Lock", "Query"), s.lockDetails)
	huma.Register(a, op(http.MethodGet, "/locks/{id}/events", "get_GetLockEventsRoute", "Paginated lock event history (10 per page, default the last page)", 200, secUser, "Lock", "Query"), s.lockEvents)
	huma.Register(a, op(http.MethodGet, "/locks/{id}/debug/messages", "get_GetDebugMessagesRoute", "Recent shadow messages of the lock's device (up to limit per direction, newest first)", 200, secUser, "Lock", "Query", "Debug"), s.lockDebugMessages)
	huma.Register(a, op(http.MethodPost, "/locks/{id}/device/credentials", "post_IssueDeviceCredentials", "Issue MQTT credentials for the lock's device (the lock's tenant or the admin; shown once)", 201, secUser, "Lock", "Device"), s.issueDeviceCredentials)
	huma.Register(a, op(http.MethodPost, "/locks/{id}/device/revoke", "post_RevokeDeviceCredentials", "Revoke every MQTT credential of the lock's device (the lock's tenant or the admin)", 200, secUser, "Lock", "Device"), s.revokeDeviceCredentials)
	// Doorbell residents.
	huma.Register(a, op(http.MethodPost, "/locks/{id}/AddResident", "post_AddResidentRoute", "Add resident to doorbell list", 200, secUser, "Lock", "Command", "Doorbell"), s.addResident)
	huma.Register(a, op(http.MethodPost, "/locks/{id}/RemoveResident", "post_RemoveResidentRoute", "Remove resident from doorbell list", 200, secUser, "Lock", "Command", "Doorbell"), s.removeResident)
	huma.Register(a, op(http.MethodGet, "/locks/{id}/residents", "get_GetResidentsRoute", "Get residents list (public; e-mails only for callers authorized on the lock)", 200, secPublic, "Lock", "Query"), s.residents)
	// Doorbell: ringing, answering, history (spkey extensions).
	huma.Register(a, op(http.MethodPost, "/locks/{id}/RingDoorbell", "post_RingDoorbellRoute", "Ring the lock's doorbell: notify every resident (or one) on every enabled channel", 200, secUser, "Lock", "Command", "Doorbell"), s.ringDoorbell)
	huma.Register(a, op(http.MethodGet, "/locks/{id}/doorbell/rings", "get_GetLockDoorbellRingsRoute", "Rings of the lock with each resident's delivery state per channel", 200, secUser, "Lock", "Query", "Doorbell"), s.lockRings)
	huma.Register(a, op(http.MethodPost, "/doorbell/rings/{ringId}/answer", "post_AnswerRingRoute", "Answer a ring (a targeted resident's JWT; the first answer wins)", 200, secUser, "Command", "Doorbell"), s.answerRing)
	huma.Register(a, op(http.MethodPost, "/doorbell/rings/{ringId}/decline", "post_DeclineRingRoute", "Decline a ring (a targeted resident's JWT)", 200, secUser, "Command", "Doorbell"), s.declineRing)
	huma.Register(a, op(http.MethodPost, "/users/{id}/SetNotificationPreferences", "post_SetNotificationPreferencesRoute", "Set how the doorbell reaches the user: channels and quiet hours", 200, secUser, "User", "Command", "Doorbell"), s.setPreferences)
	huma.Register(a, op(http.MethodGet, "/users/{id}/notification-preferences", "get_GetNotificationPreferencesRoute", "The user's notification preferences", 200, secUser, "User", "Query", "Doorbell"), s.getPreferences)
	huma.Register(a, op(http.MethodGet, "/users/{id}/notifications", "get_GetUserNotificationsRoute", "Rings that notified the user, newest first (cursor pagination)", 200, secUser, "User", "Query", "Doorbell"), s.notifications)
	huma.Register(a, streamOp(), s.notificationStream)
	// Hubs.
	huma.Register(a, op(http.MethodPost, "/hubs/{id}/ProvisionHub", "post_ProvisionHubRoute", "Provision hub (super API key: the factory)", 201, secUser, "Hub", "Command"), s.provisionHub)
	huma.Register(a, op(http.MethodPost, "/hubs/{id}/ClaimHub", "post_ClaimHubRoute", "Claim hub for an organization and site (the hub must be online)", 200, secUser, "Hub", "Command"), s.claimHub)
	huma.Register(a, op(http.MethodPost, "/hubs/{id}/ReClaimHub", "post_ReClaimHubRoute", "Re-claim hub to another organization and site", 200, secUser, "Hub", "Command"), s.reClaimHub)
	huma.Register(a, op(http.MethodPost, "/hubs/{id}/SetHubRole", "post_SetHubRoleRoute", "Make the hub its site's primary or a secondary hub", 200, secUser, "Hub", "Command"), s.setHubRole)
	huma.Register(a, op(http.MethodPost, "/hubs/{id}/SuspendHub", "post_SuspendHubRoute", "Suspend hub", 200, secUser, "Hub", "Command"), s.suspendHub)
	huma.Register(a, op(http.MethodPost, "/hubs/{id}/SendHubCommand", "post_SendHubCommandRoute", "Send a command to the hub through its shadow", 200, secUser, "Hub", "Command", "Device"), s.sendHubCommand)
	huma.Register(a, op(http.MethodPost, "/hubs/{id}/CommissionDevice", "post_CommissionDeviceRoute", "Ask the hub to commission a Matter device with a pairing code", 200, secUser, "Hub", "Command", "Device"), s.commissionDevice)
	huma.Register(a, op(http.MethodGet, "/hubs/{id}/status", "get_GetHubStatusRoute", "Hub status with its presence and reported version and uptime", 200, secUser, "Hub", "Query"), s.hubStatus)
	huma.Register(a, op(http.MethodPost, "/hubs/{id}/device/credentials", "post_IssueHubDeviceCredentials", "Issue MQTT credentials for the hub's thing (its org's key or a super key; shown once)", 201, secUser, "Hub", "Device"), s.issueHubDeviceCredentials)
	huma.Register(a, op(http.MethodPost, "/hubs/{id}/device/revoke", "post_RevokeHubDeviceCredentials", "Revoke every MQTT credential of the hub's thing", 200, secUser, "Hub", "Device"), s.revokeHubDeviceCredentials)
	// Users.
	huma.Register(a, op(http.MethodPost, "/users", "post_EnsureUserRoute", "Sign-up hook: ensure a user exists (X-Admin-API-Key)", 200, secAdmin, "User"), s.ensureUser)
	huma.Register(a, op(http.MethodGet, "/users/by-email", "get_GetUserByEmailRoute", "Find (or create) user by email address", 200, secUser, "User", "Query"), s.userByEmail)
	huma.Register(a, op(http.MethodGet, "/users/by-phone", "get_GetUserByPhoneRoute", "Find (or create) user by phone number", 200, secUser, "User", "Query"), s.userByPhone)
	huma.Register(a, op(http.MethodPost, "/users/{id}/CreateUser", "post_CreateUserRoute", "Create user", 201, secUser, "User", "Command"), s.createUser)
	huma.Register(a, op(http.MethodPost, "/users/{id}/UpdateEmail", "post_UpdateEmailRoute", "Set an email on a user that has none", 200, secUser, "User", "Command"), s.updateEmail)
	huma.Register(a, op(http.MethodPost, "/users/{id}/UpdatePhoneNumber", "post_UpdatePhoneNumberRoute", "Set or remove a user's phone number", 200, secUser, "User", "Command"), s.updatePhoneNumber)
	huma.Register(a, op(http.MethodGet, "/users/{id}/profile", "get_GetUserProfileRoute", "User profile", 200, secUser, "User", "Query"), s.userProfile)
	huma.Register(a, op(http.MethodGet, "/users/{id}/phone-number", "get_GetUserPhoneNumberRoute", "User's phone number", 200, secUser, "User", "Query"), s.userPhoneNumber)
	// Admin API: tenants and API keys.
	huma.Register(a, op(http.MethodPost, "/tenants/{orgId}/register", "post_RegisterTenant", "Register a partner tenant", 201, secAdmin, "Admin"), s.registerTenant)
	huma.Register(a, op(http.MethodGet, "/admin/workflows", "get_ListWorkflowsRoute", "Recent workflow runs with their status", 200, secAdmin, "Admin", "Workflows", "Command"), s.listWorkflows)
	huma.Register(a, op(http.MethodPost, "/admin/workflows/canary", "post_StartCanaryWorkflowRoute", "Start a harmless sleeping canary run", 200, secAdmin, "Admin", "Workflows", "Command"), s.startCanary)
	huma.Register(a, op(http.MethodGet, "/admin/workflows/{instanceId}", "get_GetWorkflowRoute", "One workflow run: params, progress, status, result", 200, secAdmin, "Admin", "Workflows", "Command"), s.getWorkflow)
	huma.Register(a, op(http.MethodPost, "/admin/workflows/{instanceId}/terminate", "post_TerminateWorkflowRoute", "Stop a workflow run", 200, secAdmin, "Admin", "Workflows", "Command"), s.terminateWorkflow)
	huma.Register(a, op(http.MethodGet, "/tenants", "get_ListTenants", "List tenants with masked key info", 200, secAdmin, "Admin"), s.listTenants)
	huma.Register(a, op(http.MethodPost, "/api-keys", "post_IssueApiKey", "Issue the organization's API key (shown once)", 201, secAdmin, "Admin"), s.issueKey)
	huma.Register(a, op(http.MethodPost, "/api-keys/{orgId}/rotate", "post_RotateApiKey", "Rotate: issue a new key and revoke the old one at once", 201, secAdmin, "Admin"), s.rotateKey)
	s.webhookRoutes(a)
	// Operations.
	huma.Register(a, op(http.MethodGet, "/healthz", "get_Healthz", "Liveness", 200, secPublic, "Ops"), s.healthz)
	huma.Register(a, op(http.MethodGet, "/readyz", "get_Readyz", "Readiness: the database answers", 200, secPublic, "Ops"), s.readyz)
	mux.HandleFunc("GET /.well-known/jwks.json", s.jwks)
}
