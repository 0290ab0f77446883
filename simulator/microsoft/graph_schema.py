"""Property names of the Graph v1.0 entity types the Microsoft simulator serves, taken from
the v1.0 CSDL (structural properties plus inherited ones), so `$select` is as strict as Graph.
"""

from __future__ import annotations


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


PROPERTIES: dict[str, frozenset[str]] = {
    "user": _names(
        "id deletedDateTime aboutMe accountEnabled ageGroup assignedLicenses assignedPlans "
        "authorizationInfo birthday businessPhones city companyName consentProvidedForMinor "
        "country createdDateTime creationType customSecurityAttributes department "
        "deviceEnrollmentLimit displayName employeeHireDate employeeId "
        "employeeLeaveDateTime employeeOrgData employeeType externalUserState "
        "externalUserStateChangeDateTime faxNumber givenName hireDate identities "
        "identityParentId imAddresses interests isManagementRestricted isResourceAccount "
        "jobTitle lastPasswordChangeDateTime legalAgeGroupClassification "
        "licenseAssignmentStates mail mailboxSettings mailNickname mobilePhone mySite "
        "officeLocation onPremisesDistinguishedName onPremisesDomainName "
        "onPremisesExtensionAttributes onPremisesImmutableId onPremisesLastSyncDateTime "
        "onPremisesProvisioningErrors onPremisesSamAccountName onPremisesSecurityIdentifier "
        "onPremisesSyncEnabled onPremisesUserPrincipalName otherMails passwordPolicies "
        "passwordProfile pastProjects postalCode preferredDataLocation preferredLanguage "
        "preferredName print provisionedPlans proxyAddresses responsibilities schools "
        "securityIdentifier serviceProvisioningErrors showInAddressList signInActivity "
        "signInSessionsValidFromDateTime skills state streetAddress surname usageLocation "
        "userPrincipalName userType"
    ),
    "application": _names(
        "id deletedDateTime addIns api appId applicationTemplateId appRoles "
        "authenticationBehaviors certification createdByAppId createdDateTime "
        "defaultRedirectUri description disabledByMicrosoftStatus displayName "
        "groupMembershipClaims identifierUris info isDeviceOnlyAuthSupported isDisabled "
        "isFallbackPublicClient keyCredentials logo managerApplications "
        "nativeAuthenticationApisEnabled notes oauth2RequirePostResponse optionalClaims "
        "parentalControlSettings passwordCredentials publicClient publisherDomain "
        "requestSignatureVerification requiredResourceAccess samlMetadataUrl "
        "serviceManagementReference servicePrincipalLockConfiguration signInAudience spa "
        "tags tokenEncryptionKeyId uniqueName verifiedPublisher web"
    ),
    "servicePrincipal": _names(
        "id deletedDateTime accountEnabled addIns alternativeNames appDescription "
        "appDisplayName appId applicationTemplateId appOwnerOrganizationId "
        "appRoleAssignmentRequired appRoles createdByAppId customSecurityAttributes "
        "description disabledByMicrosoftStatus displayName homepage info isDisabled "
        "keyCredentials loginUrl logoutUrl notes notificationEmailAddresses "
        "oauth2PermissionScopes passwordCredentials preferredSingleSignOnMode "
        "preferredTokenSigningKeyThumbprint replyUrls "
        "resourceSpecificApplicationPermissions samlSingleSignOnSettings "
        "servicePrincipalNames servicePrincipalType signInAudience tags "
        "tokenEncryptionKeyId verifiedPublisher"
    ),
    "organization": _names(
        "id deletedDateTime assignedPlans businessPhones city country countryLetterCode "
        "createdDateTime defaultUsageLocation displayName marketingNotificationEmails "
        "mobileDeviceManagementAuthority onPremisesLastSyncDateTime onPremisesSyncEnabled "
        "partnerTenantType postalCode preferredLanguage privacyProfile provisionedPlans "
        "securityComplianceNotificationMails securityComplianceNotificationPhones state "
        "street technicalNotificationMails tenantType verifiedDomains"
    ),
    "domain": _names(
        "id authenticationType availabilityStatus isAdminManaged isDefault isInitial isRoot "
        "isVerified manufacturer model passwordNotificationWindowInDays "
        "passwordValidityPeriodInDays state supportedServices"
    ),
    "companySubscription": _names(
        "id commerceSubscriptionId createdDateTime isTrial nextLifecycleDateTime ownerId "
        "ownerTenantId ownerType serviceStatus skuId skuPartNumber status totalLicenses"
    ),
    "subscribedSku": _names(
        "id accountId accountName appliesTo capabilityStatus consumedUnits prepaidUnits "
        "servicePlans skuId skuPartNumber subscriptionIds"
    ),
    "conditionalAccessPolicy": _names(
        "conditions createdDateTime description displayName grantControls id "
        "modifiedDateTime sessionControls state templateId"
    ),
    "unifiedRoleAssignment": _names(
        "id appScopeId condition directoryScopeId principalId principalOrganizationId "
        "roleDefinitionId"
    ),
    "identitySecurityDefaultsEnforcementPolicy": _names(
        "id deletedDateTime description displayName isEnabled"
    ),
}

# What GET /users returns when the request has no $select.
USER_DEFAULT_SELECT: tuple[str, ...] = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)
